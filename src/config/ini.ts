// A reader for TRAKTOR's arbiter.conf, which Python's configparser reads: `[section]` headers,
// `key = value` or `key: value`, keys case-insensitive (returned lower-cased), values trimmed,
// `#`/`;` comments. It reports problems by line number and never echoes a value, because the
// file holds a password and an API key.

export interface IniResult {
  /** section name (as written) → lower-cased key → value */
  readonly sections: Map<string, Map<string, string>>
  /** one line each, `line N: ...` */
  readonly problems: string[]
}

export interface IniOptions {
  /**
   * Keys (any case) whose value is taken whole, with no inline comment stripped: a password or
   * an API key may contain ` #`. Default: ConnectionString and APIKey.
   */
  readonly wholeValueKeys?: Iterable<string>
}

export const WHOLE_VALUE_KEYS: readonly string[] = ['connectionstring', 'apikey']

// configparser only sees an inline comment where `#` or `;` follows whitespace
function stripInlineComment(value: string): string {
  const m = /\s[#;]/.exec(value)
  return m === null ? value : value.slice(0, m.index)
}

export function parseIni(text: string, options: IniOptions = {}): IniResult {
  const whole = new Set(
    [...(options.wholeValueKeys ?? WHOLE_VALUE_KEYS)].map((k) => k.toLowerCase()),
  )
  const sections = new Map<string, Map<string, string>>()
  const problems: string[] = []
  const sectionLines = new Map<string, number>()
  const keyLines = new Map<string, number>()
  let current: { name: string; entries: Map<string, string> } | undefined
  let afterKey = false

  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/)
  lines.forEach((raw, index) => {
    const n = index + 1
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return
    // configparser would glue an indented line onto the previous value; refuse instead of
    // guessing which one the user meant
    if (afterKey && /^\s/.test(raw)) {
      problems.push(`line ${n}: indented line would continue the previous value; unindent it`)
      return
    }
    if (line.startsWith('[')) {
      const m = /^\[([^\]]+)\]$/.exec(stripInlineComment(line).trim())
      if (m === null) {
        problems.push(`line ${n}: expected "[section]"`)
        return
      }
      const name = (m[1] as string).trim()
      const first = sectionLines.get(name)
      if (first !== undefined) problems.push(`line ${n}: section [${name}] repeats line ${first}`)
      else sectionLines.set(name, n)
      const entries = sections.get(name) ?? new Map<string, string>()
      sections.set(name, entries)
      current = { name, entries }
      afterKey = false
      return
    }
    const delimiter = line.search(/[=:]/)
    const key = delimiter === -1 ? '' : line.slice(0, delimiter).trim().toLowerCase()
    if (key === '') {
      problems.push(`line ${n}: expected "key = value"`)
      return
    }
    afterKey = true
    if (current === undefined) {
      problems.push(`line ${n}: "${key}" comes before any [section] (start with [DEFAULT])`)
      return
    }
    const rest = line.slice(delimiter + 1)
    const value = (whole.has(key) ? rest : stripInlineComment(rest)).trim()
    const id = `${current.name}\n${key}`
    const first = keyLines.get(id)
    if (first !== undefined) problems.push(`line ${n}: "${key}" is already set on line ${first}`)
    else keyLines.set(id, n)
    current.entries.set(key, value)
  })
  return { sections, problems }
}
