// Reads the config once, completely: JSON or arbiter.conf, env overrides for secrets, every
// problem reported at once naming the key as the user wrote it, then a deeply frozen Config
// with the warnings to log at start. The only module that reads process.env.

import { readFileSync } from 'node:fs'
import { dirname, extname, resolve } from 'node:path'
import type { z } from 'zod'
import { ConfigError } from '../errors.js'
import { withoutPassword } from '../libpq/conninfo.js'
import { parseRelationName } from '../postgres/ident.js'
import { jsonSyntaxError } from './json-errors.js'
import {
  buildSchema,
  fallbackMessage,
  fsReason,
  type Parsed,
  pathText,
  type Raw,
  show,
  TESTING_ENV,
  TESTING_KEYS,
} from './schema.js'
import { fromIni, INI_LABELS } from './traktor-ini.js'
import type { ApiConfig, Config, MeshConfig } from './types.js'
import { type ConfigWarning, configWarnings } from './warnings.js'

export {
  DEFAULT_CHECK_INTERVAL_MS,
  DEFAULT_CLUSTER,
  DEFAULT_DEAD_AFTER_MS,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_IDENTITY_FILE,
  DEFAULT_LISTEN,
  DEFAULT_SUSPECT_AFTER_MS,
  parseListen,
  TESTING_ENV,
} from './schema.js'
export type { ConfigWarning }

/** Environment variables that override a config key; an empty value counts as unset. */
export const ENV_OVERRIDES = {
  TRAKTOR_API_KEY: 'api.apiKey',
  TRAKTOR_POSTGRES: 'postgres',
  TRAKTOR_PEER_PASSWORD: 'peerPassword',
} as const

type Env = Record<string, string | undefined>

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

// A config file alone must never arm a test hook (an arbiter that kills itself, a switch that
// cuts the mesh): the fault suite says so in the environment as well.
function testingProblems(raw: Raw, env: Env): string[] {
  if (!('testing' in raw) || env[TESTING_ENV] === '1') return []
  const why = `test-only hook, refused unless the environment has ${TESTING_ENV}=1`
  const t = raw.testing
  const set =
    typeof t === 'object' && t !== null && !Array.isArray(t)
      ? TESTING_KEYS.filter((k) => k in t)
      : []
  return set.length === 0 ? [`testing: ${why}`] : set.map((k) => `testing.${k}: ${why}`)
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
    ...(m.fullMeshUpTo === undefined ? {} : { fullMeshUpTo: m.fullMeshUpTo }),
  }
  return {
    nodeId: d.nodeId,
    postgres: d.postgres,
    advertisePostgres: d.advertise?.postgres ?? withoutPassword(d.postgres),
    ...(d.peerPassword === undefined ? {} : { peerPassword: d.peerPassword }),
    api,
    checkIntervalMs: d.checkIntervalMs,
    checkEveryMs: d.checkEveryMs,
    healLostSlots: d.healLostSlots,
    recordMissingRows: d.recordMissingRows,
    resolver: d.resolver ?? (mesh === undefined ? 'skip' : 'lww'),
    resolvers: Object.fromEntries(
      Object.entries(d.resolvers ?? {}).map(([name, strategy]) => {
        const rel = parseRelationName(name)
        return [`${rel.schema}.${rel.table}`, strategy]
      }),
    ),
    sequences: d.sequences ?? (mesh === undefined ? 'off' : 'stripe'),
    commit: d.commit,
    ...(d.syncQuorum === undefined ? {} : { syncQuorum: d.syncQuorum }),
    join: d.join,
    ...(mesh === undefined ? {} : { mesh }),
    logLevel: d.logLevel,
    ...(d.testing === undefined ? {} : { testing: { ...d.testing } }),
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

export interface LoadedConfig {
  readonly config: Config
  /** accepted but worth fixing; for the log at start, each naming its key as written */
  readonly warnings: readonly ConfigWarning[]
}

/**
 * Loads `path`: `.json` is the native format, anything else TRAKTOR's INI arbiter.conf.
 * Relative file paths inside are resolved against the config file's directory. Throws a
 * ConfigError listing every problem.
 */
export function loadConfig(path: string, env: Env = process.env): LoadedConfig {
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
  problems.push(...testingProblems(raw, env))
  if (result.success && result.data.commit === 'sync' && result.data.mesh === undefined)
    problems.push(
      'commit: "sync" needs mesh mode (a "mesh" section): it waits for the mesh\'s peers',
    )
  if (!result.success || problems.length > 0) throw new ConfigError(path, problems)
  const config = deepFreeze(toConfig(result.data, source, format))
  const warnings = configWarnings(config, (p) => label(labels, p))
  return deepFreeze({ config, warnings })
}

/**
 * A config given as an object (what a .json config file holds), through the same schema and
 * the same defaults as a file; relative paths resolve against `baseDir`. No environment
 * overrides. The demo builds its arbiters' configs this way. Throws a ConfigError listing
 * every problem.
 */
export function configFromObject(raw: Raw, baseDir: string, source: string): LoadedConfig {
  const labels: Labels = new Map()
  const { schema, keys } = buildSchema(baseDir)
  const result = schema.safeParse(raw, { error: fallbackMessage })
  if (!result.success)
    throw new ConfigError(
      source,
      result.error.issues.flatMap((iss) => issueLines(iss, labels, keys)),
    )
  const config = deepFreeze(toConfig(result.data, source, 'json'))
  const warnings = configWarnings(config, (p) => label(labels, p))
  return deepFreeze({ config, warnings })
}
