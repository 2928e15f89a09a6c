// The traktor command line: start | demo | keygen | ctl, each command's arguments read by
// Node's util.parseArgs. The only place that writes to the terminal directly (usage, fatal
// config errors); everything else logs through pino.
import './compat.js'
import { type ParseArgsConfig, parseArgs } from 'node:util'
import { loadConfig } from './config/load.js'
import { runCtl } from './ctl/index.js'
import { ConfigError } from './errors.js'
import { createLogger } from './log.js'
import { VERSION } from './version.js'

const USAGE = `traktor — multi-master replication for PostgreSQL

usage:
  traktor start --config FILE     run one arbiter (FILE: native .json or TRAKTOR's arbiter.conf)
  traktor keygen FILE             write a new private-network (pnet) key for a cluster
  traktor ctl [options] COMMAND   the cluster from a shell: status, nodes, replicaset, history
                                  (traktor ctl --help lists the commands and options)
  traktor demo [--nodes N] [--exit]
                                  N PostgreSQL 17 servers + N arbiters on loopback (default 3);
                                  --exit: run the walkthrough, check it, and stop
  traktor --help | --version

The README has the configuration reference.`

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return cmd === undefined ? 2 : 0
  }
  if (cmd === '--version' || cmd === '-v') {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  if (cmd === 'start') return await start(rest)
  if (cmd === 'keygen') return await keygen(rest)
  if (cmd === 'ctl') return await runCtl(rest)
  if (cmd === 'demo') return await demo(rest)
  process.stderr.write(`traktor: unknown command "${cmd}"\n\n${USAGE}\n`)
  return 2
}

async function start(args: string[]): Promise<number> {
  const required = '--config FILE is required'
  const parsed = parse('start', args, { options: { config: { type: 'string' } } }, required)
  if (typeof parsed === 'number') return parsed
  const file = parsed.values.config
  if (file === undefined) {
    process.stderr.write(`traktor start: ${required}\n`)
    return 2
  }
  let loaded: ReturnType<typeof loadConfig>
  try {
    loaded = loadConfig(file)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`traktor: ${err.message}\n`)
      return 2
    }
    throw err
  }
  const { config, warnings } = loaded
  const log = createLogger({ nodeId: config.nodeId, level: config.logLevel })
  for (const w of warnings)
    log.warn({ component: 'config', setting: w.key, ...w.fields }, w.message)
  // libp2p's yamux can throw StreamStateError from a timer when a stream is opened on a
  // closing connection; that one loses a stream, not the arbiter. Anything else is fatal.
  process.on('uncaughtException', (err) => {
    if (err.name === 'StreamStateError') {
      log.warn({ err: err.message }, 'libp2p stream error outside any call (ignored)')
      return
    }
    log.fatal({ err: err.stack ?? err.message }, 'uncaught exception')
    process.exit(1)
  })
  // loaded here, not at the top: ctl and keygen start in a tenth of the time without libp2p
  const { Arbiter } = await import('./arbiter.js')
  const arbiter = new Arbiter({ config, log })
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      log.info({ signal }, 'stopping')
      resolve()
    }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  })
  try {
    await arbiter.start()
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'arbiter failed to start')
    await arbiter.stop().catch(() => undefined)
    return 1
  }
  await stopped
  await arbiter.stop()
  // every part has stopped; whatever the runtime still holds open (a socket a library did not
  // close, a retry timer) must not keep a stopped daemon alive: say what it was, and exit
  const left = process.getActiveResourcesInfo().filter((r) => !IDLE_RESOURCES.has(r))
  if (left.length > 0) log.debug({ resources: left }, 'still open after stop; exiting anyway')
  return process.exit(0)
}

/** what a stopped process holds without anything pending: its own standard streams */
const IDLE_RESOURCES = new Set(['TTYWrap', 'PipeWrap', 'FSReqCallback'])

async function demo(args: string[]): Promise<number> {
  const badNodes = '--nodes must be an integer from 2 to 9'
  const parsed = parse(
    'demo',
    args,
    { options: { nodes: { type: 'string' }, exit: { type: 'boolean' } } },
    badNodes,
  )
  if (typeof parsed === 'number') return parsed
  const { nodes: nodesArg, exit } = parsed.values
  const nodes = nodesArg === undefined ? 3 : Number(nodesArg)
  if (!Number.isInteger(nodes) || nodes < 2 || nodes > 9) {
    process.stderr.write(`traktor demo: ${badNodes}\n`)
    return 2
  }
  const { runDemo } = await import('./demo/demo.js')
  const { terminal } = await import('./demo/output.js')
  return await runDemo({ nodes, exit: exit === true, out: terminal })
}

async function keygen(args: string[]): Promise<number> {
  const required = 'FILE is required'
  const parsed = parse('keygen', args, { allowPositionals: true }, required)
  if (typeof parsed === 'number') return parsed
  const [file, ...more] = parsed.positionals
  if (file === undefined || more.length > 0) {
    process.stderr.write(
      `traktor keygen: ${file === undefined ? required : `one FILE, not "${more[0]}" too`}\n`,
    )
    return 2
  }
  const { writePskFile } = await import('./mesh/keys.js')
  try {
    await writePskFile(file)
  } catch (err) {
    process.stderr.write(`traktor keygen: ${(err as Error).message}\n`)
    return 1
  }
  process.stdout.write(
    `wrote a private-network key to ${file}; copy it to every arbiter of the cluster\n`,
  )
  return 0
}

const HELP = { help: { type: 'boolean', short: 'h' } } as const

/**
 * util.parseArgs, strict, with -h/--help: the parsed arguments, or the exit code after the
 * usage (0) or a usage error (2): an unknown option, a stray word, or an option without its
 * value (`valueMissing`: what the command has always said then).
 */
function parse<T extends Omit<ParseArgsConfig, 'args' | 'strict'>>(
  command: string,
  args: string[],
  config: T,
  valueMissing: string,
) {
  let parsed: ReturnType<typeof parseArgs<T & { args: string[]; strict: true }>>
  try {
    parsed = parseArgs({
      ...config,
      options: { ...config.options, ...HELP },
      args,
      strict: true,
    } as T & { args: string[]; strict: true })
  } catch (err) {
    const e = err as Error & { code?: string }
    if (!e.code?.startsWith('ERR_PARSE_ARGS_')) throw err
    const why = usageError(e.message)
    process.stderr.write(
      why === undefined
        ? `traktor ${command}: ${valueMissing}\n`
        : `traktor ${command}: ${why}\n(traktor --help shows the usage)\n`,
    )
    return 2
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  return parsed
}

/** util.parseArgs's messages, shorter; undefined: an option without its value */
function usageError(message: string): string | undefined {
  const unknown = /^Unknown option '([^']+)'/.exec(message)
  if (unknown) return `unknown option ${unknown[1]}`
  // "--nodes" at the end, or before a word that starts with "-"
  if (/^Option '--\S+[^']*' argument (missing|is ambiguous)/.test(message)) return undefined
  const flag = /^Option '(--\S+)' does not take an argument/.exec(message)
  if (flag) return `${flag[1]} takes no value`
  const unexpected = /^Unexpected argument '([^']*)'/.exec(message)
  if (unexpected) return `unexpected argument "${unexpected[1]}"`
  return message
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`traktor: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  },
)
