#!/usr/bin/env node
// traktor's benchmark suite (`npm run bench`): figures against their targets on loopback with
// real PostgreSQL 17 servers, printed as a table and written to bench/results.json.
//
//   node scripts/bench/run.mjs [--quick] [--only latency,join,joincopy,conflict,datapath,lww,sync,ddl,mesh,check,footprint]
//
// --quick runs fewer repetitions. --only runs a subset. Every run is appended to results.json
// (its commit and whether the code differed from it): a figure measured again keeps its earlier
// runs' summaries in `history`, the others keep their own `measured` date. Every server and
// process started here is stopped at the end, on an error, and on Ctrl-C.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { machineLoad, otherLoad, Sampler, waitQuiet } from './procstat.mjs'
import {
  cleanupAll,
  figure,
  installSignalHandlers,
  isInterrupted,
  round,
  say,
  sleep,
  source,
} from './util.mjs'

const ROOT = path.resolve(import.meta.dirname, '../..')
const RESULTS = path.join(ROOT, 'bench', 'results.json')
const SUITES = [
  'latency',
  'join',
  'joincopy',
  'conflict',
  'datapath',
  'lww',
  'sync',
  'ddl',
  'mesh',
  'check',
  'footprint',
]
const IDLE_SECONDS = 30
// Other sessions run tests on this machine: before a measurement, wait until they use at most
// this much CPU (% of one core), at most QUIET_WAIT_MS each time and QUIET_BUDGET_MS per run.
const QUIET_PERCENT = 25
const QUIET_WAIT_MS = 20_000
const QUIET_BUDGET_MS = 240_000

function parseArgs(argv) {
  const opts = { quick: false, only: SUITES, meshSizes: undefined }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--quick') opts.quick = true
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i]
      const asked = (v ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
      const bad = asked.filter((s) => !SUITES.includes(s))
      if (bad.length > 0 || asked.length === 0) {
        throw new Error(`--only takes a list of: ${SUITES.join(', ')} (got ${v})`)
      }
      opts.only = SUITES.filter((s) => asked.includes(s))
    } else if (a.startsWith('--mesh-sizes=')) {
      opts.meshSizes = a
        .slice('--mesh-sizes='.length)
        .split(',')
        .map(Number)
        .filter((x) => Number.isInteger(x) && x >= 2)
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(
        `usage: node scripts/bench/run.mjs [--quick] [--only ${SUITES.join(',')}] [--mesh-sizes=16,32,64]\n`,
      )
      process.exit(0)
    } else throw new Error(`unknown argument ${a} (try --help)`)
  }
  return opts
}

function machine() {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
  }
}

/** The context each benchmark gets: options, a figure sink, and footprint sampling. */
function context(opts, figures) {
  const ctx = {
    quick: opts.quick,
    meshSizes: opts.meshSizes,
    pgVersion: undefined,
    record(f) {
      // other sessions share this machine: the load beside each figure says how noisy it was
      f.loadavg1 = round(os.loadavg()[0], 2)
      figures.push(f)
      if (f.n === 0) {
        say(`  ${f.name}: no result (${f.note})`)
        return
      }
      const p = f.pass === null ? '' : f.pass ? ' ✓' : ' ✗'
      say(
        `  ${f.name}: p50 ${f.p50} ${f.unit}, p95 ${f.p95}${f.p99 === undefined ? '' : `, p99 ${f.p99}`} (n=${f.n})${f.target ? ` target ${f.target}${p}` : ''}`,
      )
    },
    /**
     * Sample one arbiter while a benchmark runs (pause/resume leave stretches out); end()
     * records its RSS and CPU figures.
     */
    footprint(phase, pid) {
      if (!opts.only.includes('footprint')) return { pause() {}, resume() {}, end() {} }
      const done = []
      let current = new Sampler(pid).start()
      return {
        pause() {
          if (current) done.push(current.stop())
          current = undefined
        },
        resume() {
          current ??= new Sampler(pid).start()
        },
        end() {
          this.pause()
          const rss = done.flatMap((r) => r.rss)
          // CPU per 5 s window: a 0.5 s sample counts 10 ms ticks, so it reads 0, 2 or 4 % of an
          // idle process and its median says little; ten of them read to 0.2 %
          const cpu = windows(
            done.flatMap((r) => r.cpu),
            10,
          )
          const seconds = done.reduce((a, r) => a + r.seconds, 0)
          const used = done.reduce((a, r) => a + (r.cpuMean ?? 0) * r.seconds, 0)
          const mean = seconds > 0 ? used / seconds : undefined
          // issue 14's bounds for an idle arbiter; the other phases are measured, not bounded
          const idle = phase.startsWith('idle')
          ctx.record(
            figure({
              name: `arbiter RSS: ${phase}`,
              unit: 'MiB',
              samples: rss,
              ...(idle ? { target: { stat: 'p50', max: 100 } } : {}),
              note: `one arbiter (node 0), /proc/<pid>/status VmRSS every 0.5 s over ${round(seconds)} s`,
            }),
          )
          ctx.record(
            figure({
              name: `arbiter CPU: ${phase}`,
              unit: '%',
              samples: cpu,
              ...(idle ? { target: { stat: 'p50', max: 1 } } : {}),
              note: `one arbiter (node 0), /proc/<pid>/stat utime+stime per 5 s window, % of one core; mean ${round(mean)} %`,
              extra: { mean: round(mean) },
            }),
          )
        },
      }
    },
    /** Wait for the machine to be quiet (bounded); logs and returns what it found. */
    async quiet(label) {
      const left = QUIET_BUDGET_MS - ctx.quietSpentMs
      if (left <= 0) return { waitedMs: 0, othersCpuPercent: undefined, quiet: false }
      const r = await waitQuiet(QUIET_PERCENT, Math.min(QUIET_WAIT_MS, left))
      ctx.quietSpentMs += r.waitedMs
      if (r.waitedMs > 1500 || !r.quiet) {
        say(
          `  (${label}: waited ${round(r.waitedMs / 1000)} s for other processes to calm down; now ${r.othersCpuPercent} % CPU)`,
        )
      }
      return r
    },
    quietSpentMs: 0,
    /** Footprint of an idle arbiter of a meshed 3-node cluster, once per run. */
    async idleFootprint(cluster) {
      if (ctx.idleDone || !opts.only.includes('footprint')) return
      ctx.idleDone = true
      say(`footprint: ${IDLE_SECONDS} s of an idle 3-node cluster`)
      await sleep(2000)
      await ctx.quiet('idle footprint')
      const f = ctx.footprint('idle (3-node mesh)', cluster.arbiters[0].pid)
      await sleep(IDLE_SECONDS * 1000)
      f.end()
    },
  }
  return ctx
}

/** Means of consecutive groups of `n` samples (all of them as one, when fewer than n). */
function windows(samples, n) {
  if (samples.length < n) return samples.length > 0 ? [mean(samples)] : []
  const out = []
  for (let i = 0; i + n <= samples.length; i += n) out.push(mean(samples.slice(i, i + n)))
  return out
}

function mean(xs) {
  return xs.reduce((a, b) => a + b, 0) / xs.length
}

const MODULES = {
  latency: './bench-latency.mjs',
  join: './bench-join.mjs',
  conflict: './bench-conflict.mjs',
  datapath: './bench-datapath.mjs',
  lww: './bench-lww.mjs',
  sync: './bench-sync.mjs',
  joincopy: './bench-joincopy.mjs',
  ddl: './bench-ddl.mjs',
  mesh: './bench-mesh.mjs',
  check: './bench-check.mjs',
}

async function main() {
  let opts
  try {
    opts = parseArgs(process.argv.slice(2))
  } catch (err) {
    say(err.message)
    process.exit(2)
  }
  installSignalHandlers()
  const started = new Date()
  const figures = []
  const ctx = context(opts, figures)
  const errors = []
  const suites = {}
  const noise = { loadavgStart: os.loadavg().map((v) => round(v, 2)), others: new Set() }
  const watch = setInterval(() => {
    for (const o of machineLoad()) noise.others.add(o)
  }, 5000)
  for (const o of machineLoad()) noise.others.add(o)
  say(`traktor bench${opts.quick ? ' (quick)' : ''}: ${opts.only.join(', ')}`)
  for (const suite of opts.only) {
    if (isInterrupted()) break
    let mod = MODULES[suite]
    if (suite === 'footprint') {
      // footprint figures come with the other suites; alone, it measures an idle cluster
      if (opts.only.some((s) => s === 'latency')) continue
      mod = './bench-footprint.mjs'
    }
    const load = otherLoad()
    say(`\n== ${suite}`)
    try {
      const m = await import(mod)
      await m.run(ctx)
    } catch (err) {
      if (isInterrupted()) break
      errors.push({ suite, error: err.message })
      say(`${suite} FAILED: ${err.stack ?? err.message}`)
      await cleanupAll()
    }
    const l = load.stop()
    suites[suite] = l
    say(
      `== ${suite} took ${l.seconds} s; CPU of this benchmark ${l.oursCpuPercent} %, of other processes ${l.othersCpuPercent} % (of one core; ${os.cpus().length} cores)`,
    )
  }
  clearInterval(watch)
  await cleanupAll()
  if (isInterrupted()) return
  noise.suites = suites
  const result = write(started, figures, errors, ctx, noise)
  process.stdout.write(`\n${table(result.figures)}\n`)
  process.stdout.write(
    `\nmachine: ${describe(result.machine)}\nwritten: ${path.relative(process.cwd(), RESULTS)}\n`,
  )
  if (errors.length > 0) {
    process.stdout.write(`\nfailed: ${errors.map((e) => `${e.suite} (${e.error})`).join('; ')}\n`)
    process.exitCode = 1
  }
}

function describe(m) {
  return `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}, PostgreSQL ${m.postgres ?? '?'}`
}

/** A figure's summary, kept in its history when a later run measures it again. */
function summary(f) {
  const keys = ['measured', 'commit', 'dirty', 'p50', 'p95', 'p99', 'n', 'misses', 'pass']
  return Object.fromEntries(keys.filter((k) => f[k] !== undefined).map((k) => [k, f[k]]))
}

/**
 * Write results.json. Figures of suites not run are kept; a figure measured again keeps the
 * earlier runs' summaries in `history` (appended, never replaced).
 */
function write(started, figures, errors, ctx, noise) {
  let previous
  if (fs.existsSync(RESULTS)) previous = JSON.parse(fs.readFileSync(RESULTS, 'utf8'))
  const src = source(ROOT)
  const before = new Map((previous?.figures ?? []).map((f) => [f.name, f]))
  for (const f of figures) {
    Object.assign(f, { commit: src.commit, dirty: src.dirty })
    const old = before.get(f.name)
    if (old) f.history = [...(old.history ?? []), summary(old)]
  }
  const names = new Set(figures.map((f) => f.name))
  const kept = (previous?.figures ?? []).filter((f) => !names.has(f.name))
  const order = (f) => SUITES.indexOf(f.suite ?? 'footprint')
  // within a suite: mesh sizes ascending, footprint phases in the order (1)-(4)
  const size = (f) => Number(/^mesh (\d+):|\((\d)\)$/.exec(f.name)?.slice(1).find(Boolean) ?? 0)
  const merged = [...kept, ...figures.map((f) => ({ suite: suiteOf(f), ...f }))].sort(
    (a, b) => order(a) - order(b) || size(a) - size(b),
  )
  const run = {
    date: started.toISOString(),
    ...src,
    args: process.argv.slice(2),
    durationSeconds: round((Date.now() - started.getTime()) / 1000),
    loadavgStart: noise.loadavgStart,
    loadavgEnd: os.loadavg().map((v) => round(v, 2)),
    // per suite: seconds, CPU of this benchmark and of every other process (% of one core)
    suites: noise.suites,
    otherSessions: [...noise.others].slice(0, 10),
    ...(errors.length > 0 ? { errors } : {}),
  }
  const result = {
    machine: {
      ...machine(),
      postgres: ctx.pgVersion ?? previous?.machine?.postgres,
    },
    date: run.date,
    conditions: {
      loopback: '127.0.0.1 only',
      postgres:
        'embedded PostgreSQL 17 with the harness fast settings (fsync, synchronous_commit and full_page_writes off, shared_buffers 32MB)',
      postgresSettings: {
        fsync: 'off',
        synchronous_commit: 'off',
        full_page_writes: 'off',
        shared_buffers: '32MB',
        wal_level: 'logical',
        track_commit_timestamp: 'on',
      },
    },
    // every run whose figures are in this file, oldest first (a figure's `measured` says which)
    runs: [...(previous?.runs ?? []), run],
    figures: merged,
  }
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true })
  fs.writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`)
  return result
}

function suiteOf(f) {
  const n = f.name
  if (n.startsWith('arbiter RSS') || n.startsWith('arbiter CPU')) return 'footprint'
  if (n.startsWith('control change')) return 'latency'
  if (n.startsWith('join')) return 'join'
  if (n.startsWith('conflict')) return 'conflict'
  if (n.startsWith('data path')) return 'datapath'
  if (n.startsWith('lww')) return 'lww'
  if (n.startsWith('check') || n.startsWith('repair')) return 'check'
  return 'mesh'
}

/** The human table: each figure with its target beside it. */
export function table(figures) {
  const head = ['figure', 'unit', 'p50', 'p95', 'p99', 'n', 'target', 'met']
  const rows = figures.map((f) => [
    f.name,
    f.unit,
    fmt(f.p50),
    fmt(f.p95),
    fmt(f.p99),
    String(f.n),
    f.target ?? '—',
    f.dnf ? 'DNF' : f.pass === null ? '' : f.pass ? 'yes' : 'NO',
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (r) =>
    r.map((c, i) => (i >= 2 && i <= 5 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ')
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

function fmt(v) {
  if (v === undefined) return ''
  if (v === null) return '—'
  return String(v)
}

main().catch(async (err) => {
  say(`bench failed: ${err.stack ?? err.message}`)
  await cleanupAll()
  process.exit(1)
})
