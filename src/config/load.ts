// Reads the arbiter's config once, completely: native JSON (DESIGN §3) or TRAKTOR's INI
// arbiter.conf, environment overrides for secrets, every problem reported at once (one line
// each, naming the key, never showing a secret), then a deeply frozen Config. The only module
// that reads process.env.

import { accessSync, constants, readFileSync, statSync } from 'node:fs'
import { dirname, extname, resolve } from 'node:path'
import { z } from 'zod'
import { ConfigError } from '../errors.js'
import { formatConninfo, parseConninfo, SECRET_KEYWORDS, withoutPassword } from './conninfo.js'
import { parseIni } from './ini.js'
import type { ApiConfig, Config, MeshConfig } from './types.js'

export const DEFAULT_LISTEN = '127.0.0.1:8080'
export const DEFAULT_CHECK_INTERVAL_MS = 1000
export const DEFAULT_CLUSTER = 'traktor'
export const DEFAULT_IDENTITY_FILE = 'peer.key'
export const DEFAULT_HEARTBEAT_MS = 200
export const DEFAULT_SUSPECT_AFTER_MS = 1000
export const DEFAULT_DEAD_AFTER_MS = 2000

/** Environment variables that override a config key; an empty value counts as unset. */
export const ENV_OVERRIDES = {
  TRAKTOR_API_KEY: 'api.apiKey',
  TRAKTOR_POSTGRES: 'postgres',
  TRAKTOR_PEER_PASSWORD: 'peerPassword',
} as const

type Env = Record<string, string | undefined>
type Raw = Record<string, unknown>

// nodeId ends up in subscription names and in PostgreSQL integer columns
const NODE_ID_MAX = 2_147_483_647
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/** Parses `host:port` or `[v6]:port`; returns a message instead when it cannot. */
export function parseListen(s: string): { host: string; port: number } | string {
  const m = /^\[([^\]\s]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(s)
  const port = Number(m?.[2])
  if (m === null || port > 65535) {
    return `must be "host:port" with a port up to 65535 (IPv6 as "[::1]:8080"), got ${show(s)}`
  }
  return { host: m[1] as string, port }
}

/** A value for a message; callers never pass a secret here. */
function show(v: unknown): string {
  if (v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  if (v !== null && typeof v === 'object') return 'an object'
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return 'no such file'
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied'
  if (code === 'EISDIR') return 'is a directory'
  return code ?? String(e)
}

function fileProblem(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return `"${file}" is not a file`
    accessSync(file, constants.R_OK)
    return undefined
  } catch (e) {
    return `cannot read "${file}" (${fsReason(e)})`
  }
}

const required = (what: string) => (iss: { input?: unknown }) =>
  iss.input === undefined ? 'required' : `must be ${what}, got ${show(iss.input)}`

function intIn(min: number, max: number) {
  const range = max === NODE_ID_MAX ? `>= ${min}` : `from ${min} to ${max}`
  const msg = (iss: { input?: unknown }) =>
    iss.input === undefined ? 'required' : `must be an integer ${range}, got ${show(iss.input)}`
  return z
    .number({ error: msg })
    .refine((n) => Number.isInteger(n) && n >= min && n <= max, { error: msg })
}

// Secrets: messages say what is wrong, never what was given.
const secret = () =>
  z
    .string({ error: (iss) => (iss.input === undefined ? 'required' : 'must be a string') })
    .min(1, { error: 'must not be empty' })

function conninfo(allowSecrets: boolean) {
  const error = (iss: { input?: unknown }) =>
    iss.input === undefined ? 'required' : 'must be a libpq connection string'
  return z.string({ error }).transform((s, ctx) => {
    const fail = (message: string) => {
      ctx.addIssue({ code: 'custom', message })
      return z.NEVER
    }
    if (s.trim() === '') return fail('must not be empty')
    try {
      const params = parseConninfo(s.trim())
      if (!allowSecrets && SECRET_KEYWORDS.some((k) => params.has(k))) {
        return fail('must not contain a password (passwords are never gossiped)')
      }
      return formatConninfo(params)
    } catch (e) {
      return fail((e as Error).message.replace(/^connection string: /, ''))
    }
  })
}

const multiaddr = z
  .string({ error: required('a multiaddr string') })
  .refine((s) => /^\/\S+$/.test(s), {
    error: (iss) => `must be a multiaddr starting with "/", got ${show(iss.input)}`,
  })
const multiaddrs = z.array(multiaddr, { error: required('a list of multiaddrs') })

function buildSchema(baseDir: string) {
  const path = () => z.string({ error: required('a file path') }).min(1, 'must not be empty')
  const readable = () =>
    path().transform((p, ctx) => {
      const file = resolve(baseDir, p)
      const problem = fileProblem(file)
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
      return file
    })
  const bootstrap = z
    .unknown()
    .optional()
    .transform((v, ctx): string[] => {
      if (v === undefined) return []
      const fail = (message: string, p: PropertyKey[] = []) => {
        ctx.addIssue({ code: 'custom', message, path: p })
        return z.NEVER
      }
      if (typeof v !== 'string') {
        const list = multiaddrs.safeParse(v)
        if (list.success) return list.data
        for (const iss of list.error.issues) fail(iss.message, iss.path)
        return z.NEVER
      }
      const file = resolve(baseDir, v)
      let json: unknown
      try {
        json = JSON.parse(readFileSync(file, 'utf8'))
      } catch (e) {
        const why =
          e instanceof SyntaxError ? 'is not valid JSON' : `cannot be read (${fsReason(e)})`
        return fail(`"${file}" ${why}; expected {"peers": ["/ip4/.../tcp/..."]}`)
      }
      const peers = z.strictObject({ peers: multiaddrs }).safeParse(json)
      if (peers.success) return peers.data.peers
      for (const iss of peers.error.issues) {
        const where = iss.path.length === 0 ? '' : `${pathText(iss.path)}: `
        const what =
          iss.code === 'unrecognized_keys' ? `unknown key ${iss.keys.join(', ')}` : iss.message
        fail(`"${file}": ${where}${what}`)
      }
      return z.NEVER
    })

  const tlsShape = { certFile: readable(), keyFile: readable() }
  const apiShape = {
    listen: z
      .string({ error: required('"host:port"') })
      .default(DEFAULT_LISTEN)
      .transform((s, ctx) => {
        const listen = parseListen(s)
        if (typeof listen !== 'string') return listen
        ctx.addIssue({ code: 'custom', message: listen })
        return z.NEVER
      }),
    apiKey: secret(),
    publicEndpoints: z.boolean({ error: required('true or false') }).default(true),
    tls: z
      .strictObject(tlsShape, { error: required('an object with certFile and keyFile') })
      .optional(),
  }
  const meshShape = {
    listen: multiaddrs.min(1, 'must list at least one address'),
    bootstrap,
    identityFile: path()
      .default(DEFAULT_IDENTITY_FILE)
      .transform((p) => resolve(baseDir, p)),
    pskFile: readable().optional(),
    insecure: z.boolean({ error: required('true or false') }).default(false),
    cluster: z
      .string({ error: required('a string') })
      .default(DEFAULT_CLUSTER)
      .refine((s) => /^[a-z0-9][a-z0-9-]{0,62}$/.test(s), {
        error: (iss) =>
          `must be 1-63 of a-z, 0-9 and "-", not starting with "-", got ${show(iss.input)}`,
      }),
    heartbeatMs: intIn(10, 60_000).default(DEFAULT_HEARTBEAT_MS),
    suspectAfterMs: intIn(10, 3_600_000).default(DEFAULT_SUSPECT_AFTER_MS),
    deadAfterMs: intIn(10, 3_600_000).default(DEFAULT_DEAD_AFTER_MS),
  }
  const mesh = z
    .strictObject(meshShape, { error: required('an object') })
    // runs even when a sibling field failed, so these problems are reported in the same pass
    .superRefine(
      (m, ctx) => {
        if (m.pskFile === undefined && m.insecure === false) {
          ctx.addIssue({
            code: 'custom',
            path: ['pskFile'],
            message:
              'required in mesh mode (create one with "traktor keygen FILE"), ' +
              'unless "mesh.insecure" is true',
          })
        }
        const order = [
          ['heartbeatMs', m.heartbeatMs],
          ['suspectAfterMs', m.suspectAfterMs],
          ['deadAfterMs', m.deadAfterMs],
        ] as const
        for (let i = 0; i + 1 < order.length; i++) {
          const [key, value] = order[i] as (typeof order)[number]
          const [nextKey, next] = order[i + 1] as (typeof order)[number]
          if (typeof value === 'number' && typeof next === 'number' && value >= next) {
            ctx.addIssue({
              code: 'custom',
              path: [key],
              message: `must be less than mesh.${nextKey} (${value} >= ${next})`,
            })
          }
        }
      },
      { when: (p) => typeof p.value === 'object' && p.value !== null },
    )
  const rootShape = {
    nodeId: intIn(0, NODE_ID_MAX),
    postgres: conninfo(true),
    advertise: z
      .strictObject({ postgres: conninfo(false).optional() }, { error: required('an object') })
      .optional(),
    // in DESIGN §3's order, which is the order problems are reported in
    api: z.strictObject(apiShape, { error: required('an object') }),
    peerPassword: secret().optional(),
    checkIntervalMs: intIn(50, 3_600_000).default(DEFAULT_CHECK_INTERVAL_MS),
    resolver: z.enum(['skip', 'off']).default('skip'),
    mesh: mesh.optional(),
    logLevel: z.enum(LOG_LEVELS).default('info'),
  }
  const keys: Record<string, readonly string[]> = {
    '': Object.keys(rootShape),
    api: Object.keys(apiShape),
    'api.tls': Object.keys(tlsShape),
    advertise: ['postgres'],
    mesh: Object.keys(meshShape),
  }
  return { schema: z.strictObject(rootShape), keys }
}

type Parsed = z.output<ReturnType<typeof buildSchema>['schema']>

function pathText(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('')
}

// Messages for the cases a schema does not word itself.
function fallbackMessage(iss: z.core.$ZodRawIssue): string | undefined {
  if (iss.code === 'invalid_type') {
    const what: Record<string, string> = {
      array: 'a list',
      object: 'an object',
      number: 'a number',
    }
    const expected = what[iss.expected] ?? `a ${iss.expected}`
    return iss.input === undefined ? 'required' : `must be ${expected}, got ${show(iss.input)}`
  }
  if (iss.code === 'invalid_value') {
    const values = iss.values.map((v) => JSON.stringify(v)).join(', ')
    return `must be one of ${values}, got ${show(iss.input)}`
  }
  return undefined
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min(
        (row[j - 1] as number) + 1,
        (prev[j] as number) + 1,
        (prev[j - 1] as number) + cost,
      )
    }
    prev = row
  }
  return prev[b.length] as number
}

function unknownKeyHint(where: string, key: string, known: readonly string[]): string {
  if (where === '' && key === 'insecure') return ' (did you mean "mesh.insecure"?)'
  const near = known.find((k) => k.toLowerCase() === key.toLowerCase() || distance(k, key) <= 2)
  return near === undefined ? '' : ` (did you mean "${near}"?)`
}

/** Names a config path the way the user wrote it: an INI key, an env variable, or the path. */
type Labels = Map<string, string>

function label(labels: Labels, path: string): string {
  // the longest labelled prefix wins: api.tls.certFile before api.tls
  for (let p = path; p !== ''; ) {
    const name = labels.get(p)
    if (name !== undefined) return name + path.slice(p.length)
    const cut = p.search(/(\.[^.[]*|\[\d+\])$/)
    if (cut <= 0) break
    p = p.slice(0, cut)
  }
  return path === '' ? 'config' : path
}

function issueLines(
  iss: z.core.$ZodIssue,
  labels: Labels,
  keys: Record<string, readonly string[]>,
) {
  const where = pathText(iss.path)
  if (iss.code === 'unrecognized_keys') {
    return iss.keys.map((k) => {
      const full = where === '' ? k : `${where}.${k}`
      return `${label(labels, full)}: unknown key${unknownKeyHint(where, k, keys[where] ?? [])}`
    })
  }
  return [`${label(labels, where)}: ${iss.message}`]
}

function applyEnv(raw: Raw, env: Env, labels: Labels): void {
  const set = (name: keyof typeof ENV_OVERRIDES, apply: (value: string) => void) => {
    const value = env[name]
    if (value === undefined || value === '') return
    apply(value)
    labels.set(ENV_OVERRIDES[name], name)
  }
  set('TRAKTOR_POSTGRES', (v) => {
    raw.postgres = v
  })
  set('TRAKTOR_PEER_PASSWORD', (v) => {
    raw.peerPassword = v
  })
  // a non-object `api` is left alone so that its own problem is reported
  const api = raw.api === undefined ? {} : raw.api
  if (typeof api === 'object' && api !== null && !Array.isArray(api)) {
    set('TRAKTOR_API_KEY', (v) => {
      raw.api = { ...api, apiKey: v }
    })
  }
}

// V8's JSON.parse messages quote the text around the error, which may be a secret, so the
// place is found here instead.
function jsonSyntaxError(text: string): string {
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

function fromJson(text: string): Raw | string {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return jsonSyntaxError(text)
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return `must hold a JSON object, got ${show(raw)}`
  }
  return raw as Raw
}

const INI_KEYS: Record<string, string> = {
  nodeid: 'NodeID',
  connectionstring: 'ConnectionString',
  apiaddress: 'APIAddress',
  checkinterval: 'CheckInterval',
  apikey: 'APIKey',
  lsnresolver: 'LSNResolver',
  sslkeyfile: 'SSLKeyfile',
  sslcertfile: 'SSLCertfile',
}

const INI_LABELS: ReadonlyArray<[string, string]> = [
  ['nodeId', 'NodeID'],
  ['postgres', 'ConnectionString'],
  ['api.listen', 'APIAddress'],
  ['api.apiKey', 'APIKey'],
  ['api.tls.certFile', 'SSLCertfile'],
  ['api.tls.keyFile', 'SSLKeyfile'],
]

/** TRAKTOR's arbiter.conf (section [DEFAULT]) → the native shape, plus its own problems. */
function fromIni(text: string, env: Env): { raw: Raw; problems: string[] } {
  const { sections, problems } = parseIni(text)
  const section = sections.get('DEFAULT')
  if (section === undefined) problems.push('[DEFAULT]: section missing')
  for (const name of sections.keys()) {
    if (name !== 'DEFAULT')
      problems.push(`[${name}]: unknown section (arbiter.conf uses [DEFAULT])`)
  }
  const known = Object.values(INI_KEYS).join(', ')
  for (const key of section?.keys() ?? []) {
    if (!(key in INI_KEYS)) problems.push(`${key}: unknown key (arbiter.conf keys: ${known})`)
  }
  const get = (key: string) => {
    const v = section?.get(key)
    return v === '' ? undefined : v
  }
  const raw: Raw = {}
  const api: Raw = {}
  raw.api = api

  const nodeId = get('nodeid')
  raw.nodeId = nodeId !== undefined && /^[+-]?\d+$/.test(nodeId) ? Number(nodeId) : nodeId
  raw.postgres = get('connectionstring')
  api.listen = get('apiaddress')
  api.apiKey = get('apikey')
  // these two keep a trailing "# ..." (see ini.ts), so TRAKTOR's template line
  // `APIKey =  # The secret API Key` would otherwise become the key itself
  const overridden = { connectionstring: 'TRAKTOR_POSTGRES', apikey: 'TRAKTOR_API_KEY' }
  for (const [key, envName] of Object.entries(overridden)) {
    if (/^[#;]/.test(get(key) ?? '') && !env[envName]) {
      problems.push(
        `${INI_KEYS[key]}: the value starts with "#" or ";" and looks like a comment ` +
          '(inline comments are not stripped from this key); set the real value',
      )
    }
  }

  const interval = get('checkinterval')
  if (interval !== undefined) {
    const ms = /^(\d+(\.\d*)?|\.\d+)$/.test(interval) ? Math.round(Number(interval) * 1000) : NaN
    if (ms >= 50 && ms <= 3_600_000) raw.checkIntervalMs = ms
    else problems.push(`CheckInterval: must be seconds from 0.05 to 3600, got ${show(interval)}`)
  }

  const resolver = section?.get('lsnresolver') ?? ''
  if (resolver === '') raw.resolver = 'off'
  else if (/^(file_fdw|log_fdw)$/i.test(resolver)) raw.resolver = 'skip'
  else problems.push(`LSNResolver: must be file_fdw, log_fdw or empty, got ${show(resolver)}`)

  const keyFile = get('sslkeyfile')
  const certFile = get('sslcertfile')
  if (keyFile !== undefined && certFile !== undefined) api.tls = { certFile, keyFile }
  else if (keyFile !== undefined)
    problems.push('SSLCertfile: missing (SSLKeyfile is set; TLS needs both)')
  else if (certFile !== undefined)
    problems.push('SSLKeyfile: missing (SSLCertfile is set; TLS needs both)')
  return { raw, problems }
}

function toConfig(d: Parsed, source: string, format: Config['format']): Config {
  const api: ApiConfig = {
    host: d.api.listen.host,
    port: d.api.listen.port,
    apiKey: d.api.apiKey,
    publicEndpoints: d.api.publicEndpoints,
    ...(d.api.tls === undefined ? {} : { tls: d.api.tls }),
  }
  const m = d.mesh
  const mesh: MeshConfig | undefined = m && {
    listen: m.listen,
    bootstrap: m.bootstrap,
    identityFile: m.identityFile,
    ...(m.pskFile === undefined ? {} : { pskFile: m.pskFile }),
    insecure: m.insecure,
    cluster: m.cluster,
    heartbeatMs: m.heartbeatMs,
    suspectAfterMs: m.suspectAfterMs,
    deadAfterMs: m.deadAfterMs,
  }
  return {
    nodeId: d.nodeId,
    postgres: d.postgres,
    advertisePostgres: d.advertise?.postgres ?? withoutPassword(d.postgres),
    ...(d.peerPassword === undefined ? {} : { peerPassword: d.peerPassword }),
    api,
    checkIntervalMs: d.checkIntervalMs,
    resolver: d.resolver,
    ...(mesh === undefined ? {} : { mesh }),
    logLevel: d.logLevel,
    source,
    format,
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/**
 * Loads `path`: `.json` is the native format, anything else TRAKTOR's INI arbiter.conf.
 * Relative file paths inside are resolved against the config file's directory. Throws a
 * ConfigError listing every problem.
 */
export function loadConfig(path: string, env: Env = process.env): Config {
  const source = resolve(path)
  let text: string
  try {
    text = readFileSync(source, 'utf8').replace(/^\uFEFF/, '')
  } catch (e) {
    throw new ConfigError(path, [`config file: cannot read "${source}" (${fsReason(e)})`])
  }
  const format = extname(source).toLowerCase() === '.json' ? 'json' : 'ini'
  const labels: Labels = new Map()
  const problems: string[] = []
  let raw: Raw
  if (format === 'json') {
    const json = fromJson(text)
    if (typeof json === 'string') throw new ConfigError(path, [`config file: ${json}`])
    raw = json
  } else {
    const ini = fromIni(text, env)
    raw = ini.raw
    problems.push(...ini.problems)
    for (const [key, name] of INI_LABELS) labels.set(key, name)
  }
  applyEnv(raw, env, labels)
  const { schema, keys } = buildSchema(dirname(source))
  const result = schema.safeParse(raw, { error: fallbackMessage })
  if (!result.success) {
    for (const iss of result.error.issues) problems.push(...issueLines(iss, labels, keys))
  }
  if (!result.success || problems.length > 0) throw new ConfigError(path, problems)
  return deepFreeze(toConfig(result.data, source, format))
}
