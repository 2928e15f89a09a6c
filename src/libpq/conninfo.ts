// libpq connection strings, parsed the way libpq's conninfo_parse and conninfo_uri_parse read
// them, so a string that works with psql works here, and one libpq would refuse fails here
// first, with a message that names the keyword and the position but never a password.

import { TraktorError } from '../errors.js'

/**
 * Parameters in the order they first appear. A repeated keyword keeps its first position and
 * its last value, which is what libpq does with `host=a host=b`.
 */
export type ConnParams = Map<string, string>

/** PostgreSQL 17's libpq keywords (PQconninfoOptions); anything else is refused by libpq. */
export const CONNINFO_KEYWORDS: ReadonlySet<string> = new Set([
  'host',
  'hostaddr',
  'port',
  'dbname',
  'user',
  'password',
  'passfile',
  'require_auth',
  'channel_binding',
  'connect_timeout',
  'client_encoding',
  'options',
  'application_name',
  'fallback_application_name',
  'keepalives',
  'keepalives_idle',
  'keepalives_interval',
  'keepalives_count',
  'tcp_user_timeout',
  'replication',
  'gssencmode',
  'sslmode',
  'sslnegotiation',
  'sslcompression',
  'sslcert',
  'sslkey',
  'sslpassword',
  'sslcertmode',
  'sslrootcert',
  'sslcrl',
  'sslcrldir',
  'sslsni',
  'requirepeer',
  'ssl_min_protocol_version',
  'ssl_max_protocol_version',
  'krbsrvname',
  'gsslib',
  'gssdelegation',
  'service',
  'target_session_attrs',
  'load_balance_hosts',
])

/** Keywords whose values are secrets: never logged, never gossiped. */
export const SECRET_KEYWORDS: readonly string[] = ['password', 'sslpassword']

const URI_PREFIX = /^postgres(?:ql)?:\/\//

function fail(message: string): never {
  throw new TraktorError('ERR_CONNINFO', `connection string: ${message}`)
}

// libpq uses C isspace() in the default locale: ASCII whitespace only.
function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f'
}

export function isConninfoUri(s: string): boolean {
  return URI_PREFIX.test(s)
}

/** Parses a key/value string or a `postgresql://` / `postgres://` URI. Throws ERR_CONNINFO. */
export function parseConninfo(s: string): ConnParams {
  return isConninfoUri(s) ? parseUri(s) : parseKeyValue(s)
}

// libpq's old `requiressl` is still accepted by its parser, which rewrites it to sslmode;
// doing the same keeps the string valid for servers whose libpq no longer knows the word.
function store(params: ConnParams, key: string, value: string): void {
  if (key === 'requiressl') params.set('sslmode', value.startsWith('1') ? 'require' : 'prefer')
  else params.set(key, value)
}

// An unquoted password with a space in it splits into "keywords" made of the password's own
// characters: say where, not what.
function failAfterSecret(secret: string, at: number): never {
  fail(
    `unexpected text after the value of "${secret}" at character ${at + 1} ` +
      `(quote a value that contains spaces: ${secret}='...')`,
  )
}

function checkKeyword(key: string, at: number, afterSecret: string | undefined): void {
  if (CONNINFO_KEYWORDS.has(key) || key === 'requiressl') return
  if (afterSecret !== undefined) failAfterSecret(afterSecret, at)
  const hint = CONNINFO_KEYWORDS.has(key.toLowerCase())
    ? ` (keywords are lower case: "${key.toLowerCase()}")`
    : ''
  fail(`unknown keyword "${key}" at character ${at + 1}${hint}`)
}

function parseKeyValue(s: string): ConnParams {
  const params: ConnParams = new Map()
  let i = 0
  // the secret keyword whose unquoted value was read last, for leak-free messages
  let afterSecret: string | undefined
  while (i < s.length) {
    if (isSpace(s[i])) {
      i++
      continue
    }
    const keyStart = i
    while (i < s.length && s[i] !== '=' && !isSpace(s[i])) i++
    const key = s.slice(keyStart, i)
    while (isSpace(s[i])) i++
    if (s[i] !== '=') {
      if (afterSecret !== undefined) failAfterSecret(afterSecret, keyStart)
      fail(`missing "=" after "${key}" at character ${keyStart + 1}`)
    }
    if (key === '') fail(`missing keyword before "=" at character ${i + 1}`)
    checkKeyword(key, keyStart, afterSecret)
    i++
    while (isSpace(s[i])) i++
    let value = ''
    if (s[i] === "'") {
      const open = i++
      for (;;) {
        if (i >= s.length) {
          fail(`unterminated quoted value for "${key}" (quote opened at character ${open + 1})`)
        }
        const c = s[i++] as string
        if (c === '\\') {
          if (i < s.length) value += s[i++]
        } else if (c === "'") {
          break
        } else {
          value += c
        }
      }
      afterSecret = undefined
    } else {
      while (i < s.length && !isSpace(s[i])) {
        const c = s[i++] as string
        // a backslash escapes the next character; a trailing one is dropped, as in libpq
        if (c === '\\') {
          if (i < s.length) value += s[i++]
        } else {
          value += c
        }
      }
      afterSecret = SECRET_KEYWORDS.includes(key) ? key : undefined
    }
    if (value.includes('\0')) fail(`the value of "${key}" contains a NUL character`)
    store(params, key, value)
  }
  return params
}

function decode(part: string, what: string, at: number): string {
  if (/[ \t\n\r\v\f]/.test(part)) {
    fail(`unexpected whitespace in the URI's ${what} at character ${at + 1} (use %20)`)
  }
  if (/%(?![0-9A-Fa-f]{2})/.test(part)) {
    fail(`invalid percent-encoding in the URI's ${what} at character ${at + 1}`)
  }
  let decoded: string
  try {
    decoded = decodeURIComponent(part)
  } catch {
    fail(`percent-encoding in the URI's ${what} at character ${at + 1} is not valid UTF-8`)
  }
  if (decoded.includes('\0')) fail(`%00 is not allowed in the URI's ${what}`)
  return decoded
}

// postgresql://[user[:password]@][host][:port][/dbname][?key=value&...]
function parseUri(s: string): ConnParams {
  const params: ConnParams = new Map()
  let i = (URI_PREFIX.exec(s)?.[0] ?? '').length
  const until = (stops: string): number => {
    const start = i
    while (i < s.length && !stops.includes(s.charAt(i))) i++
    return start
  }
  // libpq: credentials are whatever precedes the first "@" that comes before any "/"
  let at = i
  while (at < s.length && s[at] !== '@' && s[at] !== '/') at++
  if (s[at] === '@') {
    const userStart = until(':@')
    const user = decode(s.slice(userStart, i), 'user name', userStart)
    if (user !== '') params.set('user', user)
    if (s[i] === ':') {
      const pwStart = ++i
      i = at
      const password = decode(s.slice(pwStart, at), 'password', pwStart)
      if (password !== '') params.set('password', password)
    }
    i = at + 1
  }
  let host: string
  if (s[i] === '[') {
    const open = i++
    const start = until(']')
    if (i >= s.length) fail(`missing "]" after the IPv6 address opened at character ${open + 1}`)
    if (i === start) fail(`empty IPv6 address at character ${open + 1}`)
    host = decode(s.slice(start, i++), 'host', start)
  } else {
    const start = until(':/?,')
    host = decode(s.slice(start, i), 'host', start)
  }
  if (host !== '') params.set('host', host)
  if (s[i] === ':') {
    const start = ++i
    until('/?,')
    const port = decode(s.slice(start, i), 'port', start)
    if (port !== '') params.set('port', port)
  }
  if (s[i] === ',') {
    fail(`more than one host (at character ${i + 1}) is not supported; name one server`)
  }
  if (i < s.length && s[i] !== '/' && s[i] !== '?') {
    fail(`unexpected "${s[i]}" at character ${i + 1} of the URI (expected ":", "/" or "?")`)
  }
  if (s[i] === '/') {
    const start = ++i
    until('?')
    const dbname = decode(s.slice(start, i), 'database name', start)
    if (dbname !== '') params.set('dbname', dbname)
  }
  if (s[i] === '?') parseQuery(s, i + 1, params)
  return params
}

function parseQuery(s: string, from: number, params: ConnParams): void {
  let start = from
  while (start < s.length) {
    let end = s.indexOf('&', start)
    if (end === -1) end = s.length
    const part = s.slice(start, end)
    const eq = part.indexOf('=')
    if (eq === -1) fail(`URI query parameter at character ${start + 1} has no "="`)
    let key = decode(part.slice(0, eq), 'query parameter name', start)
    if (part.indexOf('=', eq + 1) !== -1) {
      fail(`extra "=" in the URI query parameter "${key}" (use %3D in values)`)
    }
    let value = decode(part.slice(eq + 1), `value of "${key}"`, start + eq + 1)
    // JDBC's spelling, which libpq accepts too
    if (key === 'ssl' && value === 'true') {
      key = 'sslmode'
      value = 'require'
    }
    if (!CONNINFO_KEYWORDS.has(key) && key !== 'requiressl') {
      fail(`unknown URI query parameter "${key}" at character ${start + 1}`)
    }
    store(params, key, value)
    start = end + 1
  }
}

function quote(value: string): string {
  if (value !== '' && !/[\s'\\]/.test(value)) return value
  return `'${value.replace(/['\\]/g, '\\$&')}'`
}

/** Key/value syntax, quoting what needs it, so that parseConninfo(format(p)) equals p. */
export function formatConninfo(params: Iterable<readonly [string, string]>): string {
  const parts: string[] = []
  for (const [key, value] of params) {
    if (!CONNINFO_KEYWORDS.has(key)) fail(`unknown keyword "${key}"`)
    if (value.includes('\0')) fail(`the value of "${key}" contains a NUL character`)
    parts.push(`${key}=${quote(value)}`)
  }
  return parts.join(' ')
}

export function getParam(params: ConnParams, key: string): string | undefined {
  return params.get(key)
}

/** The string in key/value form without `password` and `sslpassword`. */
export function withoutPassword(s: string): string {
  const params = parseConninfo(s)
  for (const key of SECRET_KEYWORDS) params.delete(key)
  return formatConninfo(params)
}

/** The string in key/value form with `password` set (replaced in place, or appended). */
export function withPassword(s: string, password: string): string {
  const params = parseConninfo(s)
  params.set('password', password)
  return formatConninfo(params)
}

/**
 * For logs: key/value form with secrets shown as `****`. Never throws; a string that does not
 * parse is not shown at all, since where its password ends is unknown.
 */
export function redact(s: string): string {
  try {
    const params = parseConninfo(s)
    for (const key of SECRET_KEYWORDS) if (params.has(key)) params.set(key, '****')
    return formatConninfo(params)
  } catch {
    return '<invalid connection string>'
  }
}
