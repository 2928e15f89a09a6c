// Issue 8, item 7 and the mesh's weak items, on real PostgreSQL 17 and real arbiter processes:
// an arbiter that cannot reach the mesh (another swarm key, a dead bootstrap peer, every member
// gone) says so in /healthz, cluster status, metrics and a warn line; member RPCs are answered
// only for members; a flood of silent connections does not keep a new arbiter out.
import { spawn } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writePskFile } from '../../src/mesh/keys.js'
import { holdsThroughout } from '../../src/wait.js'
import { type ArbiterProcess, metric } from '../fixtures/arbiters.js'
import { call, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'
import { MeshLab } from '../fixtures/mesh-nodes.js'
import { type PgServer, startServers } from '../fixtures/pg.js'

let c: MeshCluster
let founderStartedAt = 0

interface LogLine {
  level: number
  msg: string
  [k: string]: unknown
}

function logLines(a: ArbiterProcess): LogLine[] {
  const out: LogLine[] = []
  for (const line of a.logs().split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      out.push(JSON.parse(line) as LogLine)
    } catch {
      // a line cut by the read
    }
  }
  return out
}

/** The last info-or-worse lines of an arbiter's log, for a failure message. */
function tail(a: ArbiterProcess): string {
  return logLines(a)
    .filter((l) => l.level >= 30)
    .slice(-25)
    .map((l) => JSON.stringify(l).slice(0, 300))
    .join('\n')
}

function logged(a: ArbiterProcess, level: number, msg: string): boolean {
  return logLines(a).some((l) => l.level === level && l.msg === msg)
}

/** `reasons` has the isolation reason of `reason`, whatever the last dial error is by now. */
function hasIsolation(reasons: string[], reason: string): boolean {
  const head = reason.split('; last dial error')[0] as string
  // cluster status names the node before its own reason
  return reasons.some((r) => r.includes(head))
}

async function health(a: ArbiterProcess): Promise<{ status: number; json: any }> {
  const r = await fetch(`${a.url}/healthz`)
  return { status: r.status, json: await r.json() }
}

/** Waits for /healthz to answer 503 degraded with the isolation reason; returns the body. */
async function degraded(a: ArbiterProcess, ms: number): Promise<any> {
  return await waitFor(
    async () => {
      const h = await health(a)
      return h.status === 503 && h.json.status === 'degraded' ? h.json : false
    },
    ms,
    `arbiter ${a.nodeId} degraded`,
  )
}

async function addNode(id: number): Promise<void> {
  const [pg] = (await startServers(1, () => ({ name: `iso${id}`, fast: true }))) as [PgServer]
  await c.addNode(id, pg)
}

async function dropNode(id: number): Promise<void> {
  await c.node(id).arbiter?.stop()
  await c.node(id).pg.destroy()
  delete c.nodes[id]
}

// The flooder: its own process, so that the test's polling is not slowed by it.
const FLOODER = `
const net = require('node:net')
const [port, count, reopenMs] = process.argv.slice(1).map(Number)
let opened = 0
const open = () => {
  const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' })
  opened++
  s.on('error', () => {})
  s.on('close', () => setTimeout(open, reopenMs))
}
for (let i = 0; i < count; i++) open()
setInterval(() => console.log(opened), 250)
`

/**
 * `count` silent TCP connections to `port` from another loopback address (another host, as
 * far as the listener can tell); each one the listener closes is opened again after `reopenMs`,
 * so that the flood lasts until stop().
 */
function flood(port: number, count: number, reopenMs: number) {
  const proc = spawn(
    process.execPath,
    ['-e', FLOODER, String(port), String(count), String(reopenMs)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  let opened = 0
  proc.stdout.on('data', (d: Buffer) => {
    const last = d.toString().trim().split('\n').pop()
    if (last !== undefined) opened = Number(last)
  })
  return {
    opened: () => opened,
    stop: () => proc.kill('SIGKILL'),
  }
}

beforeAll(async () => {
  c = await MeshCluster.create(2, 'iso')
  await c.start(0)
  founderStartedAt = Date.now() // its mesh is up once /healthz answers
})

afterAll(async () => {
  await c?.destroy()
})

describe('mesh isolation', () => {
  it('keeps a lone founder that bootstraps to itself healthy', async () => {
    // watched for longer than the isolation threshold (5 s for these timings)
    const healthy = async () => {
      const h = await health(c.api(0))
      expect(h.status, JSON.stringify(h.json)).toBe(200)
      expect(h.json.status).toBe('ok')
      return true
    }
    const left = Math.max(0, 6500 - (Date.now() - founderStartedAt))
    await holdsThroughout(healthy, left, 'the lone founder healthy', 250)
    const s = await call(c.api(0), 'GET', '/v1/cluster/status')
    expect(s.json.healthy, JSON.stringify(s.json)).toBe(true)
    expect(await metric(c.api(0), 'traktor_mesh_isolated')).toBe(0)
  })

  it('answers member RPCs only to members', async () => {
    const lab = new MeshLab()
    await lab.setup()
    try {
      const self = (await call(c.api(0), 'GET', '/v1/cluster/nodes')).json.nodes[0]
      const meshAddr = `/ip4/127.0.0.1/tcp/${c.node(0).meshPort}`
      // holds the swarm key, never announces itself by heartbeat
      const stranger = await lab.started({ pskFile: c.pskFile, bootstrap: [meshAddr] })
      await waitFor(
        () => stranger.connectedPeers().includes(self.peer_id),
        10_000,
        'the stranger connected',
      )
      for (const method of ['node.status', 'replicaset.get', 'proposal.status']) {
        const params = method === 'proposal.status' ? { id: 'x' } : {}
        // an answer, not a lost connection (a loaded machine can cost one)
        const r = await waitFor(
          async () => {
            const r = await stranger.request(self.peer_id, { method, params })
            return r.ok || !/^ERR_RPC_(UNREACHABLE|TIMEOUT)$/.test(r.error.code) ? r : false
          },
          15_000,
          `an answer to ${method}`,
        )
        expect(r, method).toMatchObject({ ok: false, error: { code: 'ERR_NOT_MEMBER' } })
      }
    } finally {
      await lab.teardown()
    }
  })

  it('shows an arbiter with another swarm key degraded within seconds, and says why', async () => {
    await addNode(2)
    const outsider = c.node(2)
    const otherKey = `${outsider.dir}/other.key`
    await writePskFile(otherKey)
    const a = await c.start(2, { mesh: { ...(outsider.config.mesh as object), pskFile: otherKey } })
    const t0 = Date.now()
    const h = await degraded(a, 15_000)
    expect(Date.now() - t0).toBeLessThan(12_000)
    expect(h.reasons).toHaveLength(1)
    expect(h.reasons[0]).toMatch(/^isolated from the mesh: /)
    expect(h.reasons[0]).toMatch(/private-network key/)
    const s = await call(a, 'GET', '/v1/cluster/status')
    expect(s.json.healthy).toBe(false)
    expect(hasIsolation(s.json.reasons, h.reasons[0]), JSON.stringify(s.json.reasons)).toBe(true)
    expect(await metric(a, 'traktor_mesh_isolated')).toBe(1)
    expect(await metric(a, 'traktor_mesh_dial_failures_total')).toBeGreaterThanOrEqual(1)
    const dial = logLines(a).filter((l) => l.level === 40 && l.msg === 'dial failed')
    expect(dial.length, c.problems(2)).toBeGreaterThanOrEqual(1)
    expect(JSON.stringify(dial[0])).toMatch(/private-network key/)
    await waitFor(() => logged(a, 40, 'isolated from the mesh'), 5000, 'the warn line')
    // the members never saw it, and stay healthy
    expect((await health(c.api(0))).status).toBe(200)
    await dropNode(2)
  })

  it('shows an arbiter whose bootstrap peer is down degraded, and healthy once it is up', async () => {
    await addNode(3)
    const lonely = c.node(3)
    const peerAddr = `/ip4/127.0.0.1/tcp/${c.node(1).meshPort}` // node 1 is not started yet
    const a = await c.start(3, {
      mesh: { ...(lonely.config.mesh as object), bootstrap: [peerAddr] },
    })
    const h = await degraded(a, 15_000)
    expect(h.reasons[0]).toMatch(/^isolated from the mesh: no peer reached since \d{4}-/)
    expect(h.reasons[0]).toContain(peerAddr)
    expect(h.reasons[0]).toMatch(/ECONNREFUSED/)
    expect(await metric(a, 'traktor_mesh_isolated')).toBe(1)
    // every redial failed, yet one warn line says so (the next comes a minute later)
    await waitFor(
      async () => ((await metric(a, 'traktor_mesh_dial_failures_total')) ?? 0) >= 4,
      15_000,
      'four dial failures',
    )
    const dial = logLines(a).filter((l) => l.level === 40 && l.msg === 'dial failed')
    expect(dial).toHaveLength(1)
    expect(dial[0]).toMatchObject({ target: peerAddr })

    await c.start(1)
    await c.waitMeshed([0, 1, 3])
    await waitFor(async () => (await health(a)).status === 200, 10_000, 'node 3 healthy')
    expect(await metric(a, 'traktor_mesh_isolated')).toBe(0)
    await waitFor(() => logged(a, 30, 'reached the mesh again'), 5000, 'the info line')
  })

  it('lets a new arbiter join while 120 silent connections flood its bootstrap peer', async () => {
    await addNode(4)
    const f = flood(c.node(0).meshPort, 120, 1000)
    try {
      await waitFor(() => f.opened() >= 120, 10_000, 'the flood is on')
      const before = f.opened()
      await c.start(4, {}, {}, { readyMs: 60_000 }) // a loaded machine starts slowly
      // from its API answering (its mesh is up by then; starting is not what is measured)
      const t0 = Date.now()
      // before the fix it waited for every silent connection's 10 s timeout, over and over;
      // 20 s leaves room for a loaded CI machine's slow handshakes, not for that
      await c.waitMeshed([0, 4], 20_000).catch((err: Error) => {
        throw new Error(`${err.message}\nnode 4 said:\n${tail(c.api(4))}`)
      })
      expect(Date.now() - t0).toBeLessThan(20_000)
      // the flood never let up: it kept reconnecting throughout (slower on a loaded machine,
      // and a quick join leaves it less time: CI saw 56 in a 3 s test, and none yet in one that
      // joined at once, so it is looked for after)
      await waitFor(() => f.opened() - before > 60, 10_000, 'the flood going on')
    } finally {
      f.stop()
    }
    await c.waitMeshed([0, 1, 3, 4])
  }, 120_000)

  it('shows a member that lost every other member degraded, and healthy when one returns', async () => {
    await c.node(1).arbiter?.stop()
    await c.node(3).arbiter?.stop()
    await c.node(4).arbiter?.stop()
    const h = await degraded(c.api(0), 15_000)
    expect(h.reasons[0]).toMatch(
      /^isolated from the mesh: no member heard since \d{4}-\S+ \(nodes [\d, ]+\)/,
    )
    const s = await call(c.api(0), 'GET', '/v1/cluster/status')
    expect(s.json.healthy).toBe(false)
    expect(hasIsolation(s.json.reasons, h.reasons[0]), JSON.stringify(s.json.reasons)).toBe(true)
    expect(s.json.reasons).toContainEqual('node 1 does not answer (dead)')
    await c.start(1)
    await c.waitMeshed([0, 1])
    await waitFor(async () => (await health(c.api(0))).status === 200, 10_000, 'node 0 healthy')
  })
})
