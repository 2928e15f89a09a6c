// Small helpers shared by the benchmarks: statistics, figures, waiting with a deadline, and
// the clean-up registry that stops every server and process we started — at the end, on an
// error, and on Ctrl-C.
import net from 'node:net'

/** Linear-interpolated percentile (p in 0..100) of numbers; undefined for an empty list. */
export function percentile(values, p) {
  const xs = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (xs.length === 0) return undefined
  const rank = (p / 100) * (xs.length - 1)
  const lo = Math.floor(rank)
  const hi = Math.ceil(rank)
  return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)
}

export function round(v, digits = 1) {
  if (v === undefined || v === null || !Number.isFinite(v)) return v
  const f = 10 ** digits
  return Math.round(v * f) / f
}

/**
 * One published figure: median and p95 (and p99 when asked) over the samples, the target
 * beside it and whether it was met. `target` is {stat, max} or {stat, min}, or undefined.
 */
export function figure({ name, unit, samples, p99 = false, target, note, digits = 1, extra }) {
  const f = {
    name,
    unit,
    p50: round(percentile(samples, 50), digits),
    p95: round(percentile(samples, 95), digits),
    ...(p99 ? { p99: round(percentile(samples, 99), digits) } : {}),
    n: samples.filter((v) => Number.isFinite(v)).length,
    target: target ? targetText(target, unit) : null,
    pass: null,
    samples: samples.map((v) => round(v, digits)),
    measured: new Date().toISOString(),
  }
  if (target) {
    const v = f[target.stat]
    f.pass = v === undefined ? false : target.max !== undefined ? v <= target.max : v >= target.min
  }
  if (note) f.note = note
  if (extra) f.extra = extra
  return f
}

export function targetText(t, unit) {
  const u = unit === 'ratio' || unit === '' ? '' : ` ${unit}`
  return t.max !== undefined ? `${t.stat} ≤ ${t.max}${u}` : `${t.stat} ≥ ${t.min}${u}`
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Poll `cond` until it returns a truthy value; throws after `ms` naming `what`. */
export async function waitFor(cond, ms, what, everyMs = 50) {
  const deadline = Date.now() + ms
  let last
  for (;;) {
    try {
      const v = await cond()
      if (v) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`,
      )
    }
    await sleep(everyMs)
  }
}

/** Progress lines go to stderr, so stdout carries only the table. */
export function say(...parts) {
  process.stderr.write(`${parts.join(' ')}\n`)
}

// ---- ports -------------------------------------------------------------------------------

// Ports below the kernel's ephemeral range (32768-60999 here): a port picked by binding port 0
// can be taken by an outgoing connection's local port before the server listens on it, and the
// tests of other sessions on this machine pick theirs that way.
const PORT_LOW = 20_000
const PORT_HIGH = 32_000
const handedOut = new Set()

/** A loopback port that is free now and not handed out before by this process. */
export async function freePort() {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW))
    if (handedOut.has(port)) continue
    const free = await new Promise((resolve) => {
      const srv = net.createServer()
      srv.once('error', () => resolve(false))
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
    })
    if (free) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error('no free port found')
}

// ---- clean-up ----------------------------------------------------------------------------

const cleanups = new Set()
const children = new Set()
let interrupted = false

/** Register an async clean-up; returns a function that unregisters it. */
export function onCleanup(fn) {
  cleanups.add(fn)
  return () => cleanups.delete(fn)
}

/** Run every registered clean-up, newest first; errors are reported, not thrown. */
export async function cleanupAll() {
  const list = [...cleanups].reverse()
  cleanups.clear()
  for (const fn of list) {
    try {
      await fn()
    } catch (err) {
      say(`clean-up: ${err.message}`)
    }
  }
}

/** A child process we started: killed with SIGKILL if we exit without stopping it. */
export function trackChild(proc) {
  children.add(proc)
  proc.once('exit', () => children.delete(proc))
}

export function isInterrupted() {
  return interrupted
}

export function throwIfInterrupted() {
  if (interrupted) throw new Error('interrupted')
}

/** Ctrl-C / SIGTERM: stop everything and exit 130; a second Ctrl-C exits at once. */
export function installSignalHandlers() {
  const onSignal = (sig) => {
    if (interrupted) {
      say(`${sig} again: exiting now`)
      process.exit(130)
    }
    interrupted = true
    say(`\n${sig}: stopping every server and process started by the benchmark...`)
    cleanupAll().finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('SIGHUP', onSignal)
  // last resort (the embedded servers have their own exit hook)
  process.on('exit', () => {
    for (const c of children) {
      try {
        c.kill('SIGKILL')
      } catch {
        // gone already
      }
    }
  })
}
