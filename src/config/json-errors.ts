// Locates a JSON syntax error without quoting the text: V8's own messages echo the input
// around the error, and a config file holds secrets.

export function jsonSyntaxError(text: string): string {
  let i = 0
  const stop = (what: string): never => {
    const before = text.slice(0, i).split('\n')
    const column = (before[before.length - 1] as string).length + 1
    throw new SyntaxError(`invalid JSON at line ${before.length}, column ${column}: ${what}`)
  }
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text.charAt(i))) i++
  }
  const expect = (c: string, what: string) => {
    if (text.charAt(i) !== c) stop(what)
    i++
  }
  const string = () => {
    i++
    while (text.charAt(i) !== '"') {
      const c = text.charAt(i)
      if (c === '') stop('unterminated string')
      if (c < ' ') stop('control character in a string')
      if (c === '\\') {
        const escapeSeq = /u[0-9a-fA-F]{4}|["\\/bfnrt]/y
        escapeSeq.lastIndex = i + 1
        if (!escapeSeq.test(text)) stop('invalid escape in a string')
        i = escapeSeq.lastIndex
      } else {
        i++
      }
    }
    i++
  }
  // the opening bracket is at i; items are separated by commas until `close`
  const items = (close: string, item: () => void) => {
    i++
    ws()
    if (text.charAt(i) !== close) {
      for (;;) {
        item()
        ws()
        if (text.charAt(i) !== ',') break
        i++
      }
    }
    expect(close, `expected "," or "${close}"`)
  }
  const scalar = /true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
  const value = (): void => {
    ws()
    const c = text.charAt(i)
    if (c === '{') {
      items('}', () => {
        ws()
        if (text.charAt(i) !== '"') stop('expected a quoted key')
        string()
        ws()
        expect(':', 'expected ":"')
        value()
      })
    } else if (c === '[') {
      items(']', value)
    } else if (c === '"') {
      string()
    } else {
      scalar.lastIndex = i
      if (!scalar.test(text)) stop(c === '' ? 'unexpected end of input' : 'unexpected character')
      i = scalar.lastIndex
    }
  }
  try {
    value()
    ws()
    if (i < text.length) stop('unexpected text after the end')
    return 'invalid JSON'
  } catch (e) {
    return (e as Error).message
  }
}
