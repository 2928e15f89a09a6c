// `traktor ctl`: parse, call the arbiter, print, exit with a code a script can branch on.
// --watch redraws until Ctrl-C (exit 0); a missing or wrong key ends it at once (nothing
// will change that), anything else is shown in the frame and retried.
import { type Command, type CtlEnv, type CtlOptions, parseArgs, USAGE } from './args.js'
import { runOnce } from './commands.js'
import { CtlError, EXIT, UsageError } from './errors.js'
import { ApiClient, Interrupted } from './http.js'
import { type Output, stdio } from './output.js'
import type { Report } from './report.js'

export async function runCtl(
  argv: readonly string[],
  env: CtlEnv = process.env,
  io: Output = stdio(),
): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs(argv, env)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    io.err(`traktor ctl: ${err.message}\n(traktor ctl --help shows the usage)`)
    return err.exitCode
  }
  if (parsed.kind === 'help') {
    io.out(USAGE)
    return EXIT.ok
  }
  const { options, command } = parsed
  const client = new ApiClient({
    url: options.url,
    timeoutMs: options.timeoutMs,
    ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
  })
  if (options.watchSeconds === undefined) {
    try {
      return print(io, await runOnce(client, command, options.json))
    } catch (err) {
      if (!(err instanceof CtlError)) throw err
      io.err(`traktor ctl: ${err.message}`)
      return err.exitCode
    }
  }
  return await watch(io, client, command, options, options.watchSeconds)
}

async function watch(
  io: Output,
  client: ApiClient,
  command: Command,
  options: CtlOptions,
  seconds: number,
): Promise<number> {
  const stop = new AbortController()
  const onSignal = () => stop.abort()
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    for (;;) {
      let report: Report
      try {
        report = await runOnce(client, command, options.json, stop.signal)
      } catch (err) {
        if (err instanceof Interrupted) return EXIT.ok
        if (!(err instanceof CtlError)) throw err
        if (err.exitCode === EXIT.auth) {
          io.err(`traktor ctl: ${err.message}`)
          return err.exitCode
        }
        report = { out: [], err: [`traktor ctl: ${err.message}`], exit: err.exitCode }
      }
      if (stop.signal.aborted) return EXIT.ok
      io.frame()
      if (!options.json) {
        const at = `${new Date().toISOString().slice(0, 19).replace('T', ' ')} UTC`
        io.out(`Every ${seconds} s: traktor ctl ${command.name} · ${client.url} · ${at}\n`)
      }
      print(io, report)
      if (!(await sleep(seconds * 1000, stop.signal))) return EXIT.ok
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

function print(io: Output, r: Report): number {
  if (r.out.length > 0) io.out(r.out.join('\n'))
  if (r.err.length > 0) io.err(r.err.join('\n'))
  return r.exit
}

/** true after `ms`, false as soon as `signal` aborts */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false)
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve(true)
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      resolve(false)
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
