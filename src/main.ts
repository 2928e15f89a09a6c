// The traktor command line: start | demo | keygen | ctl. The only place that writes to the
// terminal directly (usage, fatal config errors); everything else logs through pino.
import './compat.js'
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
  const file = flag(args, '--config')
  if (file === undefined) {
    process.stderr.write('traktor start: --config FILE is required\n')
    return 2
  }
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig(file)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`traktor: ${err.message}\n`)
      return 2
    }
    throw err
  }
  const log = createLogger({ nodeId: config.nodeId, level: config.logLevel })
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
  return 0
}

async function demo(args: string[]): Promise<number> {
  const nodesArg = flag(args, '--nodes')
  const nodes = nodesArg === undefined ? 3 : Number(nodesArg)
  if (!Number.isInteger(nodes) || nodes < 2 || nodes > 9) {
    process.stderr.write('traktor demo: --nodes must be an integer from 2 to 9\n')
    return 2
  }
  const { runDemo } = await import('./demo/demo.js')
  const { terminal } = await import('./demo/output.js')
  return await runDemo({ nodes, exit: args.includes('--exit'), out: terminal })
}

async function keygen(args: string[]): Promise<number> {
  const [file] = args
  if (file === undefined || file.startsWith('-')) {
    process.stderr.write('traktor keygen: FILE is required\n')
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

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name)
  if (i >= 0) return args[i + 1]
  const eq = args.find((a) => a.startsWith(`${name}=`))
  return eq?.slice(name.length + 1)
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
