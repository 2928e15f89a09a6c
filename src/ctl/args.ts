// `traktor ctl` arguments: options anywhere on the line, `--name value` or `--name=value`,
// defaults from the environment the caller passes in. Pure: no I/O, every mistake is a
// UsageError (exit 2) saying what is wrong.
import { parseRelationName } from '../postgres/ident.js'
import { UsageError } from './errors.js'

export const DEFAULT_URL = 'http://127.0.0.1:8080'
export const DEFAULT_WATCH_SECONDS = 2
/** reads answer fast (the cluster fan-out gives up on a member after 2 s) */
export const READ_TIMEOUT_MS = 10_000
/** a two-phase change may wait for a prepare deadline and four commit steps */
export const CHANGE_TIMEOUT_MS = 60_000

export const USAGE = `traktor ctl — the cluster from a shell

usage: traktor ctl [options] COMMAND

commands:
  status                          every node: state, replication, conflicts, lag, subscriptions
  nodes                           the members as the asked arbiter sees them
  replicaset list                 the replicated tables and the replicaset version
  replicaset add SCHEMA.TABLE     add a table on every node (all acknowledge, or nothing changes)
  replicaset remove SCHEMA.TABLE  remove a table from every node
  history                         conflicts and apply errors the resolvers recorded, every node
  remove-node ID                  remove a node from the cluster (ask one of the other nodes)

options:
  --url URL          the arbiter to ask (default: $TRAKTOR_URL, else ${DEFAULT_URL})
  --api-key KEY      its API key (default: $TRAKTOR_API_KEY; the variable keeps it out of ps)
  --json             print the server's JSON answer, pretty, instead of a table
  --watch [SECONDS]  redraw every SECONDS (default ${DEFAULT_WATCH_SECONDS}) until Ctrl-C; status, nodes, history
  --timeout MS       wait at most MS ms for an answer (default ${READ_TIMEOUT_MS}, changes ${CHANGE_TIMEOUT_MS})
  -h, --help         this text

exit codes: 0 ok, 1 refused or aborted, 2 usage error, 3 arbiter unreachable,
            4 API key missing or wrong`

export type Command =
  | { name: 'status' }
  | { name: 'nodes' }
  | { name: 'history' }
  | { name: 'replicaset list' }
  | { name: 'replicaset add'; relation: string }
  | { name: 'replicaset remove'; relation: string }
  | { name: 'remove-node'; node: number }

export interface CtlOptions {
  url: string
  apiKey?: string
  json: boolean
  /** set: redraw every so many seconds */
  watchSeconds?: number
  timeoutMs: number
}

export type Parsed = { kind: 'help' } | { kind: 'run'; options: CtlOptions; command: Command }

export interface CtlEnv {
  TRAKTOR_URL?: string | undefined
  TRAKTOR_API_KEY?: string | undefined
}

const WATCHABLE = new Set<Command['name']>(['status', 'nodes', 'history'])
const NUMBER = /^\d+(\.\d+)?$/
const MAX_NODE_ID = 2_147_483_647

export function parseArgs(argv: readonly string[], env: CtlEnv = {}): Parsed {
  let url = env.TRAKTOR_URL || DEFAULT_URL
  let urlFrom = env.TRAKTOR_URL ? 'TRAKTOR_URL' : '--url'
  let apiKey = env.TRAKTOR_API_KEY || undefined
  let json = false
  let watchSeconds: number | undefined
  let timeoutMs: number | undefined
  const positional: string[] = []

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--') {
      positional.push(...argv.slice(i + 1))
      break
    }
    if (arg === '-h' || arg === '--help') return { kind: 'help' }
    // "-1" is a (bad) node id, not an option
    if (!arg.startsWith('-') || arg === '-' || /^-\d/.test(arg)) {
      positional.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    const name = eq > 0 ? arg.slice(0, eq) : arg
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined
    const value = (): string => {
      if (inline !== undefined) return inline
      const next = argv[i + 1]
      if (next === undefined) throw new UsageError(`${name} needs a value`)
      i++
      return next
    }
    switch (name) {
      case '--url':
        url = value()
        urlFrom = '--url'
        break
      case '--api-key':
        apiKey = value() || undefined
        break
      case '--json':
        if (inline !== undefined) throw new UsageError('--json takes no value')
        json = true
        break
      case '--timeout':
        timeoutMs = parseTimeout(value())
        break
      case '--watch': {
        const next = argv[i + 1]
        if (inline !== undefined) watchSeconds = parseWatch(inline)
        else if (next !== undefined && NUMBER.test(next)) {
          watchSeconds = parseWatch(next)
          i++
        } else watchSeconds = DEFAULT_WATCH_SECONDS
        break
      }
      default:
        throw new UsageError(`unknown option ${name}`)
    }
  }

  if (positional[0] === 'help') return { kind: 'help' }
  const command = parseCommand(positional)
  if (watchSeconds !== undefined && !WATCHABLE.has(command.name)) {
    throw new UsageError(`--watch works with status, nodes and history, not ${command.name}`)
  }
  const change = command.name !== 'replicaset list' && !WATCHABLE.has(command.name)
  const options: CtlOptions = {
    url: normaliseUrl(url, urlFrom),
    json,
    timeoutMs: timeoutMs ?? (change ? CHANGE_TIMEOUT_MS : READ_TIMEOUT_MS),
    ...(apiKey === undefined ? {} : { apiKey }),
    ...(watchSeconds === undefined ? {} : { watchSeconds }),
  }
  return { kind: 'run', options, command }
}

function parseCommand(words: readonly string[]): Command {
  const [first, ...rest] = words
  const none = (name: 'status' | 'nodes' | 'history'): Command => {
    if (rest.length > 0) throw new UsageError(`${name} takes no arguments (got "${rest[0]}")`)
    return { name }
  }
  switch (first) {
    case undefined:
      throw new UsageError('a COMMAND is required (traktor ctl --help lists them)')
    case 'status':
    case 'nodes':
    case 'history':
      return none(first)
    case 'replicaset':
      return parseReplicaset(rest)
    case 'remove-node': {
      const [id, ...more] = rest
      if (id === undefined) throw new UsageError('remove-node needs a node ID')
      if (more.length > 0) throw new UsageError(`remove-node takes one node ID (got "${more[0]}")`)
      if (!/^\d{1,10}$/.test(id) || Number(id) > MAX_NODE_ID) {
        throw new UsageError(`node ID must be an integer >= 0, not "${id}"`)
      }
      return { name: 'remove-node', node: Number(id) }
    }
    default:
      throw new UsageError(`unknown command "${first}" (traktor ctl --help lists them)`)
  }
}

function parseReplicaset(words: readonly string[]): Command {
  const [sub, relation, ...more] = words
  if (sub === 'list') {
    if (relation !== undefined) throw new UsageError('replicaset list takes no arguments')
    return { name: 'replicaset list' }
  }
  if (sub === 'add' || sub === 'remove') {
    if (relation === undefined) throw new UsageError(`replicaset ${sub} needs SCHEMA.TABLE`)
    if (more.length > 0) throw new UsageError(`replicaset ${sub} takes one SCHEMA.TABLE`)
    try {
      parseRelationName(relation)
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
    return { name: sub === 'add' ? 'replicaset add' : 'replicaset remove', relation }
  }
  if (sub === undefined) throw new UsageError('replicaset needs list, add or remove')
  throw new UsageError(`unknown replicaset command "${sub}" (list, add or remove)`)
}

/** http(s) only; "host:port" means http; no credentials, query or fragment; no trailing slash. */
export function normaliseUrl(input: string, from = '--url'): string {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(input) ? input : `http://${input}`
  let u: URL
  try {
    u = new URL(text)
  } catch {
    throw new UsageError(`${from}: "${input}" is not a URL (e.g. ${DEFAULT_URL})`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new UsageError(`${from}: only http:// and https:// URLs, not ${u.protocol}//`)
  }
  if (u.username || u.password) {
    throw new UsageError(`${from}: no credentials in the URL; the API key goes in --api-key`)
  }
  if (u.search || u.hash) throw new UsageError(`${from}: no query or fragment in the URL`)
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`
}

function parseTimeout(v: string): number {
  if (!/^\d{1,9}$/.test(v) || Number(v) < 1) {
    throw new UsageError(`--timeout: milliseconds, an integer >= 1, not "${v}"`)
  }
  return Number(v)
}

function parseWatch(v: string): number {
  const n = Number(v)
  if (!NUMBER.test(v) || n < 0.1 || n > 86_400) {
    throw new UsageError(`--watch: seconds between 0.1 and 86400, not "${v}"`)
  }
  return n
}
