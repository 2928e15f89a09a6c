// `traktor ctl` arguments, read by Node's own util.parseArgs: options anywhere on the line,
// `--name value` or `--name=value`, after `--` only words. On top of it, what a shell user of
// ctl has always been able to type: `--watch` with or without SECONDS, and "-1" read as a (bad)
// node id. Defaults from the environment the caller passes in. Pure: no I/O, every mistake is a
// UsageError (exit 2) saying what is wrong. The usage text is written from the same tables.
import { parseArgs as tokenize } from 'node:util'
import { parseRelationName } from '../postgres/ident.js'
import { UsageError } from './errors.js'

export const DEFAULT_URL = 'http://127.0.0.1:8080'
export const DEFAULT_WATCH_SECONDS = 2
/** reads answer fast (the cluster fan-out gives up on a member after 2 s) */
export const READ_TIMEOUT_MS = 10_000
/** a two-phase change may wait for a prepare deadline and four commit steps */
export const CHANGE_TIMEOUT_MS = 60_000
/** a check scans every table on every node; a repair writes (large tables take minutes) */
export const CHECK_TIMEOUT_MS = 600_000

const COMMANDS: ReadonlyArray<readonly [string, string]> = [
  ['status', 'every node: state, replication, conflicts, lag, subscriptions'],
  ['nodes', 'the members as the asked arbiter sees them'],
  ['replicaset list', 'the replicated tables and the replicaset version'],
  [
    'replicaset add SCHEMA.TABLE',
    'add a table on every node (all acknowledge, or nothing changes)',
  ],
  ['replicaset remove SCHEMA.TABLE', 'remove a table from every node'],
  ['history', 'conflicts and apply errors the resolvers recorded, every node'],
  ['remove-node ID', 'remove a node from the cluster (ask one of the other nodes)'],
  ['readmit-node ID', 'take a removed node back; it joins again (ask a member)'],
  ['resync ID', "copy the cluster's data again on a node (its rows are replaced)"],
  ['check [SCHEMA.TABLE]', 'compare the replicated tables (or one) on every node'],
  [
    'check SCHEMA.TABLE --repair',
    "set differing rows to the last writer's version, or --from NODE's",
  ],
  ['commit sync|async', 'set the commit mode on every node (all alive, or nothing changes)'],
  ['ddl "SQL"', 'change the schema on every node at once (ALTER TABLE, indexes, tables)'],
]

/** util.parseArgs's option table, with what --help says about each. */
const OPTIONS = {
  url: {
    type: 'string',
    usage: '--url URL',
    help: `the arbiter to ask (default: $TRAKTOR_URL, else ${DEFAULT_URL})`,
  },
  'api-key': {
    type: 'string',
    usage: '--api-key KEY',
    help: 'its API key (default: $TRAKTOR_API_KEY; the variable keeps it out of ps)',
  },
  json: {
    type: 'boolean',
    usage: '--json',
    help: "print the server's JSON answer, pretty, instead of a table",
  },
  // a boolean for util.parseArgs: its SECONDS is optional, read below
  watch: {
    type: 'boolean',
    usage: '--watch [SECONDS]',
    help: `redraw every SECONDS (default ${DEFAULT_WATCH_SECONDS}) until Ctrl-C; status, nodes, history`,
  },
  timeout: {
    type: 'string',
    usage: '--timeout MS',
    help: `wait at most MS ms for an answer (default ${READ_TIMEOUT_MS}, changes ${CHANGE_TIMEOUT_MS}, check ${CHECK_TIMEOUT_MS})`,
  },
  repair: {
    type: 'boolean',
    usage: '--repair',
    help: 'check: set the differing rows of SCHEMA.TABLE to their winning version',
  },
  from: {
    type: 'string',
    usage: '--from NODE',
    help: "with --repair: take NODE's version of every differing row",
  },
  quorum: {
    type: 'string',
    usage: '--quorum K',
    help: 'commit sync: a commit waits for K peers (default every live one)',
  },
  help: { type: 'boolean', short: 'h', usage: '-h, --help', help: 'this text' },
} as const

const column = (rows: ReadonlyArray<readonly [string, string]>, width: number) =>
  rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`).join('\n')

export const USAGE = `traktor ctl — the cluster from a shell

usage: traktor ctl [options] COMMAND

commands:
${column(COMMANDS, 30)}

options:
${column(
  Object.values(OPTIONS).map((o) => [o.usage, o.help] as const),
  17,
)}

exit codes: 0 ok, 1 refused, aborted, (status) not healthy or (check) rows differ, 2 usage error,
            3 arbiter unreachable, 4 API key missing or wrong`

export type Command =
  | { name: 'status' }
  | { name: 'nodes' }
  | { name: 'history' }
  | { name: 'replicaset list' }
  | { name: 'replicaset add'; relation: string }
  | { name: 'replicaset remove'; relation: string }
  | { name: 'remove-node'; node: number }
  | { name: 'readmit-node'; node: number }
  | { name: 'resync'; node: number }
  | { name: 'check'; relation?: string }
  | { name: 'check repair'; relation: string; from?: number }
  | { name: 'commit'; mode: 'async' | 'sync'; quorum?: number }
  | { name: 'ddl'; sql: string }

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

const PARSE_OPTIONS = Object.fromEntries(
  Object.entries(OPTIONS).map(([name, o]) => [
    name,
    { type: o.type, ...('short' in o ? { short: o.short } : {}) },
  ]),
)

export function parseArgs(argv: readonly string[], env: CtlEnv = {}): Parsed {
  let url = env.TRAKTOR_URL || DEFAULT_URL
  let urlFrom = env.TRAKTOR_URL ? 'TRAKTOR_URL' : '--url'
  let apiKey = env.TRAKTOR_API_KEY || undefined
  let json = false
  let watchSeconds: number | undefined
  let timeoutMs: number | undefined
  let repair = false
  let from: number | undefined
  let quorum: number | undefined
  const positional: string[] = []

  // not strict: unknown options and misplaced values come back as tokens, and are refused
  // here in ctl's own words, in the order they were typed
  const { tokens } = tokenize({
    args: [...argv],
    options: PARSE_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  })
  /** arguments already read: a short-option group is one argument, SECONDS is --watch's */
  const read = new Set<number>()
  for (const t of tokens) {
    if (t.kind === 'option-terminator' || read.has(t.index)) continue
    if (t.kind === 'positional') {
      positional.push(t.value)
      continue
    }
    read.add(t.index)
    const raw = argv[t.index] as string
    // "-1" is a (bad) node id, not an option
    if (/^-\d/.test(raw)) {
      positional.push(raw)
      continue
    }
    if (raw === '-h') return { kind: 'help' }
    const name = raw.split('=')[0] as string
    const value = (): string => {
      if (t.value === undefined) throw new UsageError(`${name} needs a value`)
      return t.value
    }
    const flag = () => {
      if (t.inlineValue) throw new UsageError(`${name} takes no value`)
    }
    switch (raw.startsWith('--') ? t.name : undefined) {
      case 'help':
        flag()
        return { kind: 'help' }
      case 'url':
        url = value()
        urlFrom = '--url'
        break
      case 'api-key':
        apiKey = value() || undefined
        break
      case 'json':
        flag()
        json = true
        break
      case 'timeout':
        timeoutMs = parseTimeout(value())
        break
      case 'repair':
        flag()
        repair = true
        break
      case 'from':
        from = parseNodeId(value(), '--from')
        break
      case 'quorum': {
        const v = value()
        if (!/^\d{1,4}$/.test(v) || Number(v) < 1 || Number(v) > 1000)
          throw new UsageError(`--quorum must be an integer from 1 to 1000, not "${v}"`)
        quorum = Number(v)
        break
      }
      case 'watch': {
        const next = tokens.find((n) => n.index === t.index + 1)
        if (t.inlineValue) watchSeconds = parseWatch(t.value ?? '')
        else if (next?.kind === 'positional' && NUMBER.test(next.value)) {
          watchSeconds = parseWatch(next.value)
          read.add(next.index)
        } else watchSeconds = DEFAULT_WATCH_SECONDS
        break
      }
      default:
        throw new UsageError(`unknown option ${name}`)
    }
  }

  if (positional[0] === 'help') return { kind: 'help' }
  let command = parseCommand(positional)
  if (repair || from !== undefined) {
    if (command.name !== 'check') throw new UsageError('--repair and --from go with check')
    if (!repair) throw new UsageError('--from NODE names the source of a repair: add --repair')
    if (command.relation === undefined)
      throw new UsageError('check --repair needs SCHEMA.TABLE (one table at a time)')
    command = {
      name: 'check repair',
      relation: command.relation,
      ...(from === undefined ? {} : { from }),
    }
  }
  if (quorum !== undefined) {
    if (command.name !== 'commit' || command.mode !== 'sync')
      throw new UsageError('--quorum goes with commit sync')
    command = { ...command, quorum }
  }
  if (watchSeconds !== undefined && !WATCHABLE.has(command.name)) {
    throw new UsageError(`--watch works with status, nodes and history, not ${command.name}`)
  }
  const change = command.name !== 'replicaset list' && !WATCHABLE.has(command.name)
  const checking = command.name === 'check' || command.name === 'check repair'
  const options: CtlOptions = {
    url: normaliseUrl(url, urlFrom),
    json,
    timeoutMs:
      timeoutMs ?? (checking ? CHECK_TIMEOUT_MS : change ? CHANGE_TIMEOUT_MS : READ_TIMEOUT_MS),
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
    case 'remove-node':
    case 'readmit-node':
    case 'resync': {
      const [id, ...more] = rest
      if (id === undefined) throw new UsageError(`${first} needs a node ID`)
      if (more.length > 0) throw new UsageError(`${first} takes one node ID (got "${more[0]}")`)
      return { name: first, node: parseNodeId(id, 'node ID') }
    }
    case 'check': {
      const [relation, ...more] = rest
      if (more.length > 0) throw new UsageError(`check takes at most one SCHEMA.TABLE`)
      if (relation === undefined) return { name: 'check' }
      checkRelation(relation)
      return { name: 'check', relation }
    }
    case 'commit': {
      const [mode, ...more] = rest
      if (mode !== 'sync' && mode !== 'async')
        throw new UsageError(
          `commit needs sync or async${mode === undefined ? '' : `, not "${mode}"`}`,
        )
      if (more.length > 0) throw new UsageError(`commit takes one mode (got "${more[0]}")`)
      return { name: 'commit', mode }
    }
    case 'ddl': {
      // the statement as one argument (quoted in the shell); several words are joined back
      const sql = rest.join(' ').trim()
      if (sql === '')
        throw new UsageError('ddl needs one statement, quoted: traktor ctl ddl "STATEMENT"')
      return { name: 'ddl', sql }
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
    checkRelation(relation)
    return { name: sub === 'add' ? 'replicaset add' : 'replicaset remove', relation }
  }
  if (sub === undefined) throw new UsageError('replicaset needs list, add or remove')
  throw new UsageError(`unknown replicaset command "${sub}" (list, add or remove)`)
}

function checkRelation(relation: string): void {
  try {
    parseRelationName(relation)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

function parseNodeId(id: string, what: string): number {
  if (!/^\d{1,10}$/.test(id) || Number(id) > MAX_NODE_ID) {
    throw new UsageError(`${what} must be an integer >= 0, not "${id}"`)
  }
  return Number(id)
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
