// Small helpers shared by the benchmarks: statistics, figures, waiting with a deadline, and
// the clean-up registry that stops every server and process we started — at the end, on an
// error, and on Ctrl-C.
import { execFileSync } from 'node:child_process'
import { GiveUp, waitFor as sharedWaitFor } from '../../dist/wait.js'

export { GiveUp }

/**
 * Linear-interpolated percentile (p in 0..100) of numbers; undefined for an empty list. A miss
 * (a sample that never happened, e.g. a killed node never seen dead) is Infinity and counts:
 * it is never dropped from n.
 */
export function percentile(values, p) {
  const xs = values.filter((v) => typeof v === 'number' && !Number.isNaN(v)).sort((a, b) => a - b)
  if (xs.length === 0) return undefined
  const rank = (p / 100) * (xs.length - 1)
  const lo = Math.floor(rank)
  const hi = Math.ceil(rank)
  if (lo === hi || xs[lo] === xs[hi]) return xs[lo]
  if (!Number.isFinite(xs[hi])) return Number.POSITIVE_INFINITY
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
  const counted = samples.filter((v) => typeof v === 'number' && !Number.isNaN(v))
  const raw = {
    p50: percentile(counted, 50),
    p95: percentile(counted, 95),
    p99: percentile(counted, 99),
  }
  // JSON has no Infinity: a statistic that falls on a miss is null, the misses are counted
  const shown = (v) => (v === Number.POSITIVE_INFINITY ? null : round(v, digits))
  const misses = counted.filter((v) => v === Number.POSITIVE_INFINITY).length
  const f = {
    name,
    unit,
    p50: shown(raw.p50),
    p95: shown(raw.p95),
    ...(p99 ? { p99: shown(raw.p99) } : {}),
    n: counted.length,
    ...(misses > 0 ? { misses } : {}),
    target: target ? targetText(target, unit) : null,
    pass: null,
    samples: counted.map(shown),
    measured: new Date().toISOString(),
  }
  if (target) {
    // on the raw value: 1000.04 ms does not meet "≤ 1000 ms" by being shown as 1000
    const v = raw[target.stat]
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

/** The code a run measured: the commit, and whether the work tree differed from it. */
export function source(root) {
  const git = (...args) => {
    try {
      return execFileSync('git', ['-C', root, ...args], { encoding: 'utf8' }).trim()
    } catch {
      return undefined
    }
  }
  const changed = (git('status', '--porcelain', '--', 'src', 'scripts', 'package.json') ?? '')
    .split('\n')
    .filter(Boolean)
  return {
    commit: git('rev-parse', 'HEAD') ?? 'unknown',
    dirty: changed.length > 0,
    ...(changed.length > 0 ? { changed: changed.slice(0, 20) } : {}),
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * Poll `cond` until it returns a truthy value; throws after `ms` naming `what` (src/wait.ts, the
 * one loop tests, demo, bench and soak share), and at once on Ctrl-C.
 */
export function waitFor(cond, ms, what, everyMs = 50) {
  return sharedWaitFor(cond, ms, what, { everyMs, check: throwIfInterrupted })
}

/** A response's body: its JSON, else its text (undefined when empty). */
export async function bodyOf(r) {
  const text = await r.text()
  try {
    return text === '' ? undefined : JSON.parse(text)
  } catch {
    return text
  }
}

/** Progress lines go to stderr, so stdout carries only the table. */
export function say(...parts) {
  process.stderr.write(`${parts.join(' ')}\n`)
}

// ---- ports -------------------------------------------------------------------------------

// one policy for every process that starts servers (src/postgres/free-port.ts says why)
export { freePort } from '../../dist/postgres/free-port.js'

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
export function installSignalHandlers(name = 'benchmark') {
  const onSignal = (sig) => {
    if (interrupted) {
      say(`${sig} again: exiting now`)
      process.exit(130)
    }
    interrupted = true
    say(`\n${sig}: stopping every server and process started by the ${name}...`)
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
