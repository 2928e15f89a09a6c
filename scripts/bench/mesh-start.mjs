// How long a mesh of mesh-only nodes takes to start, and what it costs: N nodes of traktor's
// Mesh + Membership (the mesh benchmark's worker, mesh-worker.mjs) in P processes, started at
// once; prints the time until every node sees every other alive, the CPU the processes used,
// and each node's connection count. Not a benchmark row (no baseline beside it): a probe for
// the mesh's start, e.g. the full mesh against the sparse one:
//   node scripts/bench/mesh-start.mjs 32 3                    (nodes interleaved over 3 processes)
//   LAYOUT=bench node scripts/bench/mesh-start.mjs 32         (the benchmark's layout)
//   TRAKTOR_BENCH_FULL_MESH_UP_TO=8 node scripts/bench/mesh-start.mjs 32 3   (sparse past 8)
//   TRAKTOR_BENCH_LOG=/tmp/logs ...                           (every node logs to a file)
//   TRAKTOR_BENCH_CPU_PROF=/tmp/prof ...                      (a V8 CPU profile per process)
import { fork } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { writePskFile } from '../../dist/mesh/keys.js'
import { groups } from './bench-mesh.mjs'

const N = Number(process.argv[2] ?? 16)
const P = Number(process.argv[3] ?? 3)
const DEADLINE_MS = Number(process.env.DEADLINE_MS ?? 120_000)
const WORKER = path.resolve(import.meta.dirname, 'mesh-worker.mjs')

function layout() {
  if (process.env.LAYOUT === 'bench') return groups(N)
  const out = Array.from({ length: P }, () => [])
  for (let i = 0; i < N; i++) out[i % P]?.push(i)
  return out
}

const cpuMs = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(f[11]) + Number(f[12])) * 10
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'traktor-mesh-start-'))
const pskFile = path.join(dir, 'swarm.key')
await writePskFile(pskFile)
// ports below the ephemeral range, so that no outgoing connection holds one
const base = 20_000 + Math.floor(Math.random() * 9_000)
const ports = Array.from({ length: N }, (_, i) => base + i)
const workers = layout().map((ids) => {
  const prof = process.env.TRAKTOR_BENCH_CPU_PROF
  const proc = fork(WORKER, [], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    execArgv: prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [],
  })
  const w = { ids, proc, waiting: new Map() }
  proc.on('message', (m) => {
    if (m.type === 'error') console.error(`worker: ${m.error}`)
    const f = w.waiting.get(m.type)
    w.waiting.delete(m.type)
    f?.(m)
  })
  return w
})
const ask = (w, type, send) =>
  new Promise((resolve) => {
    w.waiting.set(type, resolve)
    if (send) w.proc.send(send)
  })
try {
  await Promise.all(workers.map((w) => ask(w, 'loaded')))
  const cpu0 = workers.map((w) => cpuMs(w.proc.pid))
  const t0 = Date.now()
  const nodes = (w) => w.ids.map((id) => ({ nodeId: id, port: ports[id] }))
  const bootstrap = `/ip4/127.0.0.1/tcp/${ports[0]}`
  const start = { type: 'start', bootstrap, pskFile, dir, victim: N - 1, total: N }
  const started = await Promise.all(
    workers.map((w) => ask(w, 'started', { ...start, nodes: nodes(w) })),
  )
  const startedMs = Math.max(...started.map((m) => m.ms))
  let view = []
  let convergedMs
  while (Date.now() - t0 < DEADLINE_MS) {
    view = (await Promise.all(workers.map((w) => ask(w, 'view', { type: 'view' })))).flatMap(
      (v) => v.nodes,
    )
    if (view.every((v) => v.alive === N - 1)) {
      convergedMs = Math.max(...view.map((v) => v.convergedAt)) - t0
      break
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  const cpu = workers.reduce((a, w, i) => a + cpuMs(w.proc.pid) - (cpu0[i] ?? 0), 0)
  const out = {
    nodes: N,
    processes: workers.map((w) => w.ids.length).join('+'),
    convergedMs: convergedMs ?? `not within ${DEADLINE_MS} ms`,
    // the slowest process's nodes started (libp2p made, listening): part of convergedMs
    startedMs: Math.round(startedMs),
    cpuMs: cpu,
    connections: view.map((v) => v.peers).join(' '),
    alive: convergedMs === undefined ? view.map((v) => v.alive).join(' ') : 'all',
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
} finally {
  for (const w of workers) if (w.proc.connected) w.proc.send({ type: 'stop' })
  await Promise.all(
    workers.map((w) => (w.proc.exitCode === null ? new Promise((r) => w.proc.once('exit', r)) : 0)),
  )
  fs.rmSync(dir, { recursive: true, force: true })
}
