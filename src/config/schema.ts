// The native JSON shape (DESIGN §3) and its wording: one place decides what a valid config is
// and how each problem reads, so JSON, INI and env input are judged alike and no message shows
// a secret.

import { accessSync, constants, readFileSync, statSync } from 'node:fs'
import { resolve } from 'node:path'
import { z } from 'zod'
import { formatConninfo, parseConninfo, SECRET_KEYWORDS } from '../libpq/conninfo.js'
import { parseRelationName } from '../postgres/ident.js'
import { CRASH_POINTS, JOIN_MODES, RESOLVER_STRATEGIES } from './types.js'

export const DEFAULT_LISTEN = '127.0.0.1:8080'
export const DEFAULT_CHECK_INTERVAL_MS = 1000
/** the background consistency check: every 10 minutes */
export const DEFAULT_CHECK_EVERY_MS = 600_000
export const DEFAULT_CLUSTER = 'traktor'
export const DEFAULT_IDENTITY_FILE = 'peer.key'
// 500 ms: a directly connected member is heard through the mesh's liveness probe as well
// (membership.ts), so the gossiped heartbeat mainly carries state, sent at once when it changes
export const DEFAULT_HEARTBEAT_MS = 500
export const DEFAULT_SUSPECT_AFTER_MS = 1000
export const DEFAULT_DEAD_AFTER_MS = 2000
/** The test-only hooks under `testing`, allowed only when TESTING_ENV is "1". */
export const TESTING_KEYS = [
  'crashAt',
  'freezeAt',
  'routes',
  'fence',
  'joinPauseMs',
  'lwwTickMs',
  'contentHashMs',
] as const
export const TESTING_ENV = 'TRAKTOR_TESTING'
/** Shorter API keys are refused; the TRAKTOR tutorial's "LetMeIn" (7) must keep working. */
export const API_KEY_MIN_LENGTH = 6
/** Shorter API keys are accepted with a warning at start. */
export const API_KEY_GOOD_LENGTH = 16

/** The config before validation: parsed JSON or the INI mapped to the native shape. */
export type Raw = Record<string, unknown>

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
export function show(v: unknown): string {
  if (v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  if (v !== null && typeof v === 'object') return 'an object'
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

export function fsReason(e: unknown): string {
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

/** What is weak about an API key, in words that never repeat it; undefined when it will do. */
export function weakApiKey(key: string): string | undefined {
  if (key === '') return 'must not be empty'
  if (key.trim() === '') return 'must not be only whitespace'
  // a key pasted with a stray space or newline would never match what clients send
  if (key.trim() !== key) return 'must not begin or end with whitespace'
  if ([...key].length < API_KEY_MIN_LENGTH) {
    return (
      `must be at least ${API_KEY_MIN_LENGTH} characters ` +
      `(${API_KEY_GOOD_LENGTH} or more random ones recommended)`
    )
  }
  return undefined
}

const apiKey = () =>
  z
    .string({ error: (iss) => (iss.input === undefined ? 'required' : 'must be a string') })
    .superRefine((key, ctx) => {
      const problem = weakApiKey(key)
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
    })

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

export function buildSchema(baseDir: string) {
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
    apiKey: apiKey(),
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
    // up to this many members a full mesh; past it a sparse one (src/mesh/overlay.ts)
    fullMeshUpTo: intIn(2, 100_000).optional(),
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
    checkEveryMs: intIn(0, 604_800_000).default(DEFAULT_CHECK_EVERY_MS),
    healLostSlots: z.boolean({ error: required('true or false') }).default(true),
    // lww: record UPDATEs/DELETEs skipped for want of the row (the role logs DEBUG1: PostgreSQL
    // 17 then also logs each apply worker's connection string, with the peer password)
    recordMissingRows: z.boolean({ error: required('true or false') }).default(false),
    // default: lww in mesh mode, skip (TRAKTOR's) in standalone mode (load.ts)
    resolver: z.enum(RESOLVER_STRATEGIES).optional(),
    // per-table overrides: {"schema.table": "lww" | "skip" | "off"}
    resolvers: z
      .record(z.string(), z.enum(RESOLVER_STRATEGIES), { error: required('an object') })
      .superRefine(
        (value, ctx) => {
          for (const name of Object.keys(value)) {
            try {
              parseRelationName(name)
            } catch (err) {
              ctx.addIssue({ code: 'custom', path: [name], message: (err as Error).message })
            }
          }
        },
        { when: (p) => typeof p.value === 'object' && p.value !== null && !Array.isArray(p.value) },
      )
      .optional(),
    // default: stripe in mesh mode, off in standalone mode (load.ts)
    sequences: z.enum(['stripe', 'off']).optional(),
    // sync: a commit returns once every live, caught-up peer applied it (mesh mode only)
    commit: z.enum(['async', 'sync']).default('async'),
    // sync: how many peers a commit waits for (default every live, caught-up one)
    syncQuorum: z.int().min(1).max(1000).optional(),
    join: z.enum(JOIN_MODES).default('empty-only'),
    mesh: mesh.optional(),
    logLevel: z.enum(LOG_LEVELS).default('info'),
    // test-only: the fault suite kills or freezes a coordinator at a chosen point of a proposal
    testing: z
      .strictObject(
        {
          crashAt: z.enum(CRASH_POINTS).optional(),
          freezeAt: z.enum(CRASH_POINTS).optional(),
          routes: z.boolean().optional(),
          fence: z.boolean().optional(),
          // the join copy waits this long before copying (tests watch a node while it copies)
          joinPauseMs: intIn(0, 600_000).optional(),
          // the lww loop's fallback tick (a test shows a queued key is resolved without it)
          lwwTickMs: intIn(50, 3_600_000).optional(),
          // how long a joining table's rows are hashed at prepare (a test: a big table's path)
          contentHashMs: intIn(1, 600_000).optional(),
        },
        { error: required('an object') },
      )
      .optional(),
  }
  const keys: Record<string, readonly string[]> = {
    '': Object.keys(rootShape),
    api: Object.keys(apiShape),
    'api.tls': Object.keys(tlsShape),
    advertise: ['postgres'],
    mesh: Object.keys(meshShape),
    testing: TESTING_KEYS,
  }
  return { schema: z.strictObject(rootShape), keys }
}

export type Parsed = z.output<ReturnType<typeof buildSchema>['schema']>

export function pathText(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('')
}

// Messages for the cases a schema does not word itself.
export function fallbackMessage(iss: z.core.$ZodRawIssue): string | undefined {
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
