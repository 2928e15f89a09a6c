// Where an idle arbiter's CPU goes (issue 14: idle ≤ 1 % of a core). Starts a 3-node cluster
// with 5 replicated tables, lets it idle, prints each arbiter's CPU (user/system, from /proc)
// and, from a V8 CPU profile of each (node --cpu-prof), the busy share of the main thread by
// what its stack touches (pg, gossipsub, the rest of libp2p, HTTP, our code) and our outermost
// frames. A tool for a person, not a benchmark: `node scripts/bench/idle-profile.mjs [seconds]`.
// The CPU it prints includes the profiler's own sampling (about twice the unprofiled figure,
// which the footprint rows of `npm run bench` measure). The arbiters run dist/main.js (the
// compiled tree), not the bundle that `npx traktor` runs: a little more memory, same work.
// `--load`: the window runs the data path's insert load (8 connections per node, single-row
// INSERTs into a replicated table), to see what the arbiters do while it runs (issue 10).
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as embedded from '../../dist/postgres/embedded.js'
import { loadClients } from './bench-datapath.mjs'
import { TraktorCluster } from './cluster.mjs'
import { sleep } from './util.mjs'

const LOAD = process.argv.includes('--load')
const IDLE_S = Number(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 20)
/** the compiled code of this checkout, as profile URLs name it */
const OURS = `file://${path.resolve(import.meta.dirname, '../../dist')}/`
const SETTLE_MS = 5000
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'traktor-idle-profile-'))
process.env.TRAKTOR_ARBITER_NODE_FLAGS = `--cpu-prof --cpu-prof-dir=${dir}`
// the arbiters run the compiled tree, not the bundle (which puts every library in one file):
// the profile's URLs then say which package each frame is in. Same shebang flags as bin/.
const shipped = path.resolve(import.meta.dirname, '../../bin/traktor.js')
const bin = path.join(dir, 'traktor-unbundled.js')
fs.writeFileSync(
  bin,
  `${fs.readFileSync(shipped, 'utf8').split('\n')[0]}\nawait import(${JSON.stringify(`${OURS}main.js`)})\n`,
)

/** user and system CPU ticks (1/100 s) of a process */
function cpu(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return { user: Number(f[11]), sys: Number(f[12]) }
}

const c = await TraktorCluster.create(3, 'idleprof_', {}, { code: { bin, embedded } })
let window
try {
  for (let k = 0; k < 5; k++) await c.createTable(`bench.t${k} (id text PRIMARY KEY, v text)`)
  await c.startAll()
  for (let k = 0; k < 5; k++) await c.addToReplicaset(`bench.t${k}`, k % 3)
  const clients = LOAD ? await loadClients(c.servers) : []
  await sleep(SETTLE_MS)
  const before = c.arbiters.map((a) => cpu(a.pid))
  // V8's profile timestamps are µs of the same monotonic clock as process.hrtime (Linux)
  const from = process.hrtime.bigint() / 1000n
  const end = Date.now() + IDLE_S * 1000
  let n = 0
  await Promise.all([
    sleep(IDLE_S * 1000),
    ...clients.flatMap((conns, node) =>
      conns.map(async (client) => {
        while (Date.now() < end) {
          await client.query({
            name: 'load-insert',
            text: 'INSERT INTO bench.t0 (id, v) VALUES ($1, $2)',
            values: [randomUUID(), `${node} ${'x'.repeat(100)}`],
          })
          n++
        }
      }),
    ),
  ])
  for (const client of clients.flat()) await client.end()
  if (LOAD) console.log(`load: ${Math.round(n / IDLE_S)} tx/s`)
  window = { from: Number(from), to: Number(process.hrtime.bigint() / 1000n) }
  const secs = (window.to - window.from) / 1e6
  c.arbiters.forEach((a, i) => {
    const now = cpu(a.pid)
    const user = (now.user - before[i].user) / secs
    const sys = (now.sys - before[i].sys) / secs
    console.log(
      `arbiter ${i}: ${(user + sys).toFixed(1)} % of a core (user ${user.toFixed(1)}, system ${sys.toFixed(1)})`,
    )
  })
} finally {
  await c.stop() // the profiles are written as the arbiters exit
}

for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
  console.log(`\n${file} (main thread, idle window only):`)
  console.log(summarize(JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')), window))
}
fs.rmSync(dir, { recursive: true, force: true })

/** Busy share of the window by what the stack touches, and by our outermost frame. */
function summarize(p, w) {
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const n of p.nodes) for (const ch of n.children ?? []) parent.set(ch, n.id)
  let t = p.startTime
  let total = 0
  const kinds = new Map()
  const ours = new Map()
  const add = (m, k, v) => m.set(k, (m.get(k) ?? 0) + v)
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]
    if (t < w.from || t > w.to) continue
    const dt = p.timeDeltas[i + 1] ?? 0
    total += dt
    const id = p.samples[i]
    if (byId.get(id).callFrame.functionName === '(idle)') continue
    const frames = []
    for (let cur = id; cur !== undefined; cur = parent.get(cur))
      frames.push(byId.get(cur).callFrame)
    const urls = frames.map((f) => f.url).join(' ')
    const kind = /pg-pool|\/pg\/|pg-protocol/.test(urls)
      ? 'pg'
      : /gossipsub/.test(urls)
        ? 'gossipsub'
        : /libp2p|yamux|noise|multiformats|\/it-/.test(urls)
          ? 'libp2p (transport, streams, probes)'
          : /fastify/.test(urls)
            ? 'http'
            : urls.includes(OURS)
              ? 'our code only'
              : 'runtime (GC, timers, other)'
    add(kinds, kind, dt)
    const outer = frames.reverse().find((f) => f.url.startsWith(OURS))
    if (outer)
      add(
        ours,
        `${outer.functionName || '(anonymous)'} ${outer.url.slice(OURS.length)}:${outer.lineNumber + 1}`,
        dt,
      )
  }
  const pct = (v) => `${((100 * v) / total).toFixed(2).padStart(6)} %`
  const busy = [...kinds.values()].reduce((a, b) => a + b, 0)
  const lines = [`busy ${pct(busy)} of ${(total / 1e6).toFixed(1)} s`]
  for (const [k, v] of [...kinds].sort((a, b) => b[1] - a[1])) lines.push(`  ${pct(v)}  ${k}`)
  lines.push('  our outermost frames:')
  for (const [k, v] of [...ours].sort((a, b) => b[1] - a[1]).slice(0, 12))
    lines.push(`  ${pct(v)}  ${k}`)
  return lines.join('\n')
}
