// What the mesh writes, write by write (issue 14): N mesh nodes (traktor's Mesh and Membership
// from dist/, no PostgreSQL) in this one process, started together from one bootstrap node;
// once every node sees every other alive, every socket write is tallied by size for 10 s.
// Prints the convergence as it goes, connections per node, bytes and writes per node and
// second, and the commonest write sizes. A tool for a person, not a benchmark:
// `node scripts/bench/wire-writes.mjs [N]` (default 16).
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { probeEveryMs } from '../../dist/cluster/detector.js'
import { Membership } from '../../dist/cluster/membership.js'
import { silentLogger } from '../../dist/log.js'
import { writePskFile } from '../../dist/mesh/keys.js'
import { Mesh } from '../../dist/mesh/node.js'
import { freePort } from '../../dist/postgres/free-port.js'

const N = Number(process.argv[2] ?? 16)
const MEASURE_S = 10
const sizes = new Map()
let total = 0
let count = 0
let counting = false
const write = net.Socket.prototype.write
net.Socket.prototype.write = function (chunk, ...rest) {
  if (counting) {
    const n = chunk?.byteLength ?? chunk?.length ?? 0
    total += n
    count++
    sizes.set(n, (sizes.get(n) ?? 0) + 1)
  }
  return write.call(this, chunk, ...rest)
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'traktor-wire-'))
const pskFile = path.join(dir, 'swarm.key')
await writePskFile(pskFile)
// the arbiter's defaults
const timings = { heartbeatMs: 500, suspectAfterMs: 1000, deadAfterMs: 2000 }
const nodes = []
const alive = (n) => n.membership.members().filter((m) => m.state === 'alive').length

async function start(i, bootstrap) {
  const log = silentLogger()
  const mesh = new Mesh({
    nodeId: i,
    cluster: 'wire',
    listen: [`/ip4/127.0.0.1/tcp/${await freePort()}`],
    bootstrap,
    identityFile: path.join(dir, `node${i}.key`),
    pskFile,
    insecure: false,
    log,
    probeEveryMs: probeEveryMs(timings),
  })
  const membership = new Membership({
    mesh,
    nodeId: i,
    postgres: `host=127.0.0.1 port=1 dbname=wire user=node${i}`,
    version: 'wire',
    timings,
    log,
    self: () => ({ joinState: 'ready', replicasetVersion: 0, rosterVersion: 0, postgresUp: true }),
  })
  await mesh.start()
  membership.start()
  nodes[i] = { mesh, membership }
}

try {
  await start(0, [])
  const boot = [nodes[0].mesh.addresses()[0]]
  const t0 = Date.now()
  await Promise.all(Array.from({ length: N - 1 }, (_, i) => start(i + 1, boot)))
  let last = ''
  while (!nodes.every((n) => alive(n) === N - 1)) {
    await new Promise((r) => setTimeout(r, 50))
    const full = nodes.filter((n) => n.mesh.connectedPeers().length === N - 1).length
    const line = `connected to all: ${full}, seeing all alive: ${nodes.filter((n) => alive(n) === N - 1).length}`
    if (line !== last) process.stdout.write(`${Date.now() - t0} ms  ${line}\n`)
    last = line
  }
  process.stdout.write(`converged after ${Date.now() - t0} ms\n`)
  await new Promise((r) => setTimeout(r, 5000)) // the start's tail
  counting = true
  await new Promise((r) => setTimeout(r, MEASURE_S * 1000))
  counting = false
  const top = [...sizes].sort((a, b) => b[1] - a[1]).slice(0, 8)
  process.stdout.write(
    `per node: ${(total / MEASURE_S / N).toFixed(0)} B/s in ${(count / MEASURE_S / N).toFixed(1)} writes/s; ` +
      `commonest writes: ${top.map(([s, c]) => `${s} B ×${c}`).join(', ')}\n`,
  )
} finally {
  for (const n of nodes) n?.membership.stop()
  await Promise.allSettled(nodes.map((n) => n?.mesh.stop()))
  fs.rmSync(dir, { recursive: true, force: true })
}
