// The mesh on real libp2p nodes over 127.0.0.1: full mesh from one bootstrap address, gossip,
// rpc, private network, validation, restarts and partitions.
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TraktorError } from '../../src/errors.js'
import { createLogger } from '../../src/log.js'
import { HELLO_KEPT_PROTOCOL, HELLO_PROTOCOL } from '../../src/mesh/hello.js'
import { loadOrCreateIdentity, peerIdOf, writePskFile } from '../../src/mesh/keys.js'
import { knownPeersFile, readKnownPeers } from '../../src/mesh/known-peers.js'
import type { MeshNode } from '../../src/mesh/libp2p.js'
import { LIVENESS_PROTOCOL_V1 } from '../../src/mesh/liveness.js'
import type { Mesh } from '../../src/mesh/node.js'
import type { GossipMessage, RpcHandler } from '../../src/mesh/types.js'
import { freePort } from '../fixtures/arbiters.js'
import {
  bareAddress,
  conflictEvent,
  dialRaw,
  fullMesh,
  holdsFalse,
  ignoreProbes,
  MeshLab,
  sendGarbage,
  serveGarbage,
  waitFor,
} from '../fixtures/mesh-nodes.js'

const lab = new MeshLab()
let a: Mesh
let b: Mesh
let c: Mesh
// how long a liveness wait may take: gossip and dials are fast on a quiet machine, but CI runs
// two test files at once beside real PostgreSQL servers (a deadline, not a performance claim)
const LIVE_MS = 10_000
const received = new Map<Mesh, GossipMessage[]>()

const echo: RpcHandler = async (from, req) => {
  if (req.method === 'echo') return { ok: true, result: { from, params: req.params } }
  if (req.method === 'slow') {
    await new Promise((r) => setTimeout(r, 1500))
    return { ok: true, result: 'late' }
  }
  if (req.method === 'throw') throw new Error('boom')
  return { ok: false, error: { code: 'ERR_UNKNOWN_METHOD', message: req.method } }
}

function heartbeat(peerId: string, nodeId: number): object {
  return {
    v: 1,
    kind: 'heartbeat',
    nodeId,
    peerId,
    postgres: 'host=127.0.0.1 port=5432 dbname=app user=traktor',
    version: '0.1.0',
    incarnation: 1,
    state: 'ready',
    replicasetVersion: 0,
    addrs: [],
    sentAt: Date.now(),
  }
}

function track(m: Mesh): Mesh {
  const list: GossipMessage[] = []
  received.set(m, list)
  m.subscribe('membership', (msg) => list.push(msg))
  m.subscribe('conflicts', (msg) => list.push(msg))
  return m
}

const got = (m: Mesh, pred: (g: GossipMessage) => boolean): boolean =>
  (received.get(m) ?? []).some(pred)

beforeAll(async () => {
  await lab.setup()
  a = track(await lab.started())
  const boot = bareAddress(a)
  expect(boot).not.toContain('/p2p/')
  ;[b, c] = await Promise.all([
    lab.started({ bootstrap: [boot] }).then(track),
    lab.started({ bootstrap: [boot] }).then(track),
  ])
  b.handle(echo)
})

afterAll(async () => {
  await lab.teardown()
})

describe('mesh of three from one bootstrap address without /p2p/', () => {
  it('reaches a full mesh within a few seconds', async () => {
    await waitFor(() => fullMesh([a, b, c]), 5000, 'full mesh of a, b, c')
    expect(new Set(b.connectedPeers())).toEqual(new Set([a.peerId, c.peerId]))
  })

  it('delivers gossip from one node to both others, signed by the publisher', async () => {
    await waitFor(() => fullMesh([a, b, c]), 5000, 'full mesh')
    await b.publish('membership', heartbeat(b.peerId, 1))
    await waitFor(
      () => [a, c].every((m) => got(m, (g) => g.from === b.peerId && g.topic === 'membership')),
      LIVE_MS,
      'heartbeat from b at a and c',
    )
    expect(b.counters().gossipOut.membership).toBeGreaterThanOrEqual(1)
    expect(a.counters().gossipIn.membership).toBeGreaterThanOrEqual(1)
  })

  it('never throws when nobody is subscribed', async () => {
    const lonely = await lab.started()
    await expect(lonely.publish('membership', heartbeat(lonely.peerId, 9))).resolves.toBeUndefined()
    await lonely.stop()
  })
})

describe('rpc', () => {
  it('answers a request', async () => {
    const res = await a.request(b.peerId, { method: 'echo', params: { x: 1 } })
    expect(res).toEqual({ ok: true, result: { from: a.peerId, params: { x: 1 } } })
  })

  it('passes a handler error through, and reports a node without a handler', async () => {
    const unknown = await a.request(b.peerId, { method: 'nope', params: null })
    expect(unknown).toMatchObject({ ok: false, error: { code: 'ERR_UNKNOWN_METHOD' } })
    const none = await a.request(c.peerId, { method: 'echo', params: null })
    expect(none).toMatchObject({ ok: false, error: { code: 'ERR_RPC_NO_HANDLER' } })
  })

  it('turns a throwing handler into ERR_RPC_HANDLER', async () => {
    const res = await a.request(b.peerId, { method: 'throw', params: null })
    expect(res).toMatchObject({ ok: false, error: { code: 'ERR_RPC_HANDLER' } })
  })

  it('honours the deadline when the handler is slow, and the stream stays usable', async () => {
    const t0 = performance.now()
    const slow = a.request(b.peerId, { method: 'slow', params: null }, { timeoutMs: 300 })
    // a request sent after the slow one is not stuck behind it
    const quick = await a.request(b.peerId, { method: 'echo', params: 2 })
    expect(quick.ok).toBe(true)
    const res = await slow
    const took = performance.now() - t0
    expect(res).toMatchObject({ ok: false, error: { code: 'ERR_RPC_TIMEOUT' } })
    expect(took).toBeGreaterThanOrEqual(290)
    expect(took).toBeLessThan(800)
  })

  it('fails fast for a peer that is not there', async () => {
    const ghost = peerIdOf(await loadOrCreateIdentity(path.join(lab.dir, 'ghost.key')))
    const t0 = performance.now()
    const res = await a.request(ghost, { method: 'echo', params: null })
    expect(res).toMatchObject({ ok: false, error: { code: 'ERR_RPC_UNREACHABLE' } })
    expect(performance.now() - t0).toBeLessThan(1000)
    const bad = await a.request('not-a-peer-id', { method: 'echo', params: null })
    expect(bad).toMatchObject({ ok: false, error: { code: 'ERR_RPC_UNREACHABLE' } })
  })

  it('ends a request at once when the peer goes away mid-call', async () => {
    const d = await lab.started({ bootstrap: [bareAddress(a)] })
    d.handle(echo)
    await waitFor(() => a.connectedPeers().includes(d.peerId), LIVE_MS, 'a sees d')
    const t0 = performance.now()
    const call = a.request(d.peerId, { method: 'slow', params: null }, { timeoutMs: 5000 })
    setTimeout(() => void d.stop(), 100)
    const res = await call
    expect(res).toMatchObject({ ok: false, error: { code: 'ERR_RPC_UNREACHABLE' } })
    expect(performance.now() - t0).toBeLessThan(1500)
  })

  it('answers a request to itself without the network', async () => {
    const res = await b.request(b.peerId, { method: 'echo', params: 3 })
    expect(res).toEqual({ ok: true, result: { from: b.peerId, params: 3 } })
  })

  it('turns a garbage reply into ERR_RPC_BAD_REPLY', async () => {
    const raw = await lab.rawNode()
    await serveGarbage(raw, new TextEncoder().encode('{not json'))
    await dialRaw(raw, a.addresses()[0] as string)
    const rawId = raw.peerId.toString()
    await waitFor(() => a.connectedPeers().includes(rawId), 2000, 'a sees the raw node')
    const res = await a.request(rawId, { method: 'echo', params: null })
    expect(res).toMatchObject({ ok: false, error: { code: 'ERR_RPC_BAD_REPLY' } })
  })

  it('closes a stream that sends garbage, and keeps serving', async () => {
    const raw = await lab.rawNode()
    const errorsBefore = b.counters().rpcErrors
    const addr = b.addresses()[0] as string
    expect(await sendGarbage(raw, addr, new TextEncoder().encode('garbage'))).toBe('closed')
    expect(b.counters().rpcErrors).toBe(errorsBefore + 1)
    const res = await a.request(b.peerId, { method: 'echo', params: 4 })
    expect(res.ok).toBe(true)
  })
})

describe('gossip validation', () => {
  it('rejects garbage and forged heartbeats, counts them, and keeps working', async () => {
    await waitFor(() => fullMesh([a, b, c]), 5000, 'full mesh')
    const before = c.counters().gossipRejected.membership
    const seen = received.get(c)?.length ?? 0
    await a.publishRaw('membership', new TextEncoder().encode('not json at all'))
    await a.publishRaw('membership', new TextEncoder().encode(JSON.stringify({ v: 2 })))
    // a well-formed heartbeat that claims to be b, signed by a
    const forged = new TextEncoder().encode(JSON.stringify(heartbeat(b.peerId, 1)))
    await a.publishRaw('membership', forged)
    await waitFor(
      () => c.counters().gossipRejected.membership >= before + 3,
      LIVE_MS,
      'three rejects at c',
    )
    expect(received.get(c)?.length ?? 0).toBe(seen)
    await a.publish('membership', heartbeat(a.peerId, 0))
    await waitFor(() => got(c, (g) => g.from === a.peerId), LIVE_MS, 'a valid heartbeat at c')
    expect(c.counters().gossipRejected.membership).toBe(before + 3)
  })

  it('applies the installed claim check, and a throwing check rejects', async () => {
    c.setClaimCheck('conflicts', (_from, payload) => {
      if ((payload as { nodeId: number }).nodeId === 66) throw new Error('check crashed')
      return (payload as { nodeId: number }).nodeId === 0
    })
    const conflict = (nodeId: number): object => ({
      v: 1,
      kind: 'conflict',
      nodeId,
      subscription: 'sub_0',
      lsn: '0/1A2B3C',
      relation: 'public.t',
      sqlState: '23505',
      reason: 'duplicate key',
      action: 'skip',
      resolved: null,
      occurred: new Date().toISOString(),
    })
    const before = c.counters().gossipRejected.conflicts
    await a.publish('conflicts', conflict(7))
    await a.publish('conflicts', conflict(66))
    await a.publish('conflicts', conflict(0))
    await waitFor(() => got(c, (g) => g.topic === 'conflicts'), LIVE_MS, 'the accepted conflict')
    await waitFor(
      () => c.counters().gossipRejected.conflicts === before + 2,
      LIVE_MS,
      'two rejects',
    )
    const conflicts = (received.get(c) ?? []).filter((g) => g.topic === 'conflicts')
    expect(conflicts.map((g) => (g.payload as { nodeId: number }).nodeId)).toEqual([0])
  })
})

describe('private network', () => {
  it('refuses to start without a key unless insecure', async () => {
    const m = lab.mesh({ pskFile: undefined, insecure: false })
    await expect(m.start()).rejects.toMatchObject({ code: 'ERR_MESH_PSK' })
    await expect(m.start()).rejects.toBeInstanceOf(TraktorError)
  })

  it('keeps out a node with another key and a node with none', async () => {
    const otherKey = path.join(lab.dir, 'other.key')
    await writePskFile(otherKey)
    const boot = bareAddress(a)
    const stranger = await lab.started({ bootstrap: [boot], pskFile: otherKey })
    const open = await lab.started({ bootstrap: [boot], pskFile: undefined, insecure: true })
    const anyLink = (): boolean =>
      stranger.connectedPeers().length > 0 ||
      open.connectedPeers().length > 0 ||
      a.connectedPeers().some((p) => p === stranger.peerId || p === open.peerId)
    expect(await holdsFalse(anyLink, 1500)).toBe(true)
    await Promise.all([stranger.stop(), open.stop()])
  })
})

describe('liveness', () => {
  it('closes the connection to a peer that stops answering within ~2 s', async () => {
    const frozen = await lab.rawNode()
    await ignoreProbes(frozen)
    await dialRaw(frozen, a.addresses()[0] as string)
    const id = frozen.peerId.toString()
    await waitFor(() => a.connectedPeers().includes(id), 2000, 'a sees the frozen node')
    const took = await waitFor(() => !a.connectedPeers().includes(id), 3000, 'a drops it')
    expect(took).toBeGreaterThan(1000)
    await frozen.stop()
  })

  it('keeps a peer that answers, and one that cannot be probed', async () => {
    const plain = await lab.rawNode() // no liveness protocol: not an arbiter, never judged
    await dialRaw(plain, a.addresses()[0] as string)
    const id = plain.peerId.toString()
    await waitFor(() => a.connectedPeers().includes(id), 2000, 'a sees the plain node')
    expect(
      await holdsFalse(() => !a.connectedPeers().includes(id) || !fullMesh([a, b, c]), 2500),
    ).toBe(true)
    await plain.stop()
  })
})

describe('hello (mesh protocol 2)', () => {
  it("names the bootstrap peer's peers to a new node: it reaches them with no gossip at all", async () => {
    // no Membership here, and the 'peers' announcement goes at start (to nobody yet) and every
    // 5 minutes: only the hello can tell r where p is
    const p = await lab.started({ cluster: 'hello1' })
    const q = await lab.started({ cluster: 'hello1', bootstrap: [p.addresses()[0] as string] })
    await waitFor(() => fullMesh([p, q]), LIVE_MS, 'p and q connected')
    const r = await lab.started({ cluster: 'hello1', bootstrap: [q.addresses()[0] as string] })
    const took = await waitFor(() => fullMesh([p, q, r]), LIVE_MS, 'r reaches p through q')
    console.info(`hello: a new node reached its bootstrap's peer in ${Math.round(took)} ms`)
    await Promise.all([p.stop(), q.stop(), r.stop()])
  })

  it('hands a record sent straight to the membership handlers, and rejects one naming another peer', async () => {
    const p = await lab.started({ cluster: 'hello2' })
    const seen: GossipMessage[] = []
    p.subscribe('membership', (m) => seen.push(m))
    const raw = await lab.rawNode()
    const id = raw.peerId.toString()
    const hello = async (record: object) => {
      const stream = await raw.dialProtocol(multiaddr(p.addresses()[0] as string), HELLO_PROTOCOL, {
        signal: AbortSignal.timeout(3000),
      })
      await lpStream(stream).write(
        new TextEncoder().encode(JSON.stringify({ v: 1, kind: 'hello', record, peers: [] })),
      )
      await stream.close()
    }
    await hello(heartbeat(a.peerId, 7)) // names another peer: refused
    await hello({ ...heartbeat(id, 7), state: 'bogus' }) // not a record: refused
    await hello(heartbeat(id, 8))
    await waitFor(() => seen.length > 0, LIVE_MS, 'the record handed over')
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatchObject({ from: id, topic: 'membership', payload: { nodeId: 8 } })
    await Promise.all([p.stop(), raw.stop()])
  })

  it('takes hello after hello on one kept stream (hello 1.1.0), a bad one skipped', async () => {
    const p = await lab.started({ cluster: 'hello4' })
    const seen: GossipMessage[] = []
    p.subscribe('membership', (m) => seen.push(m))
    const raw = await lab.rawNode()
    const id = raw.peerId.toString()
    const stream = await raw.dialProtocol(
      multiaddr(p.addresses()[0] as string),
      HELLO_KEPT_PROTOCOL,
      {
        signal: AbortSignal.timeout(3000),
      },
    )
    const lp = lpStream(stream)
    const hello = (record: object) =>
      lp.write(new TextEncoder().encode(JSON.stringify({ v: 1, kind: 'hello', record, peers: [] })))
    await hello(heartbeat(id, 8))
    await waitFor(() => seen.length === 1, LIVE_MS, 'the first record handed over')
    await hello(heartbeat(a.peerId, 7)) // names another peer: refused, the stream goes on
    await lp.write(new TextEncoder().encode('not json'))
    await hello({ ...heartbeat(id, 9), incarnation: 2 })
    await waitFor(() => seen.length === 2, LIVE_MS, 'the second record, on the same stream')
    expect(seen.map((m) => (m.payload as { nodeId: number }).nodeId)).toEqual([8, 9])
    expect(stream.status).toBe('open')
    await Promise.all([p.stop(), raw.stop()])
  })

  it('sends its hellos on a kept stream, and a stream per hello to a peer of hello 1.0.0', async () => {
    const p = await lab.started({ cluster: 'hello5' })
    const take = (node: MeshNode, protocol: string) => {
      const got: Array<{ stream: Stream; hello: unknown }> = []
      void node.handle(protocol, async (stream) => {
        const buf = await lpStream(stream).read({ signal: AbortSignal.timeout(3000) })
        got.push({ stream, hello: JSON.parse(new TextDecoder().decode(buf.subarray())) })
      })
      return got
    }
    // a peer of today: the hello comes on 1.1.0, and the stream is left open for the next ones
    const now = await lab.rawNode()
    const kept = take(now, HELLO_KEPT_PROTOCOL)
    const one = take(now, HELLO_PROTOCOL)
    await dialRaw(now, p.addresses()[0] as string)
    await waitFor(() => kept.length === 1, LIVE_MS, 'the first hello, on the kept stream')
    expect(kept[0]?.hello).toMatchObject({ kind: 'hello' })
    expect(kept[0]?.stream.remoteWriteStatus).toBe('writable')
    expect(one).toHaveLength(0)
    // a peer of hello 1.0.0 only (before 8 December 2026): a stream of its own, closed after it
    const old = await lab.rawNode()
    const alone = take(old, HELLO_PROTOCOL)
    await dialRaw(old, p.addresses()[0] as string)
    await waitFor(() => alone.length === 1, LIVE_MS, 'the first hello, on a stream of its own')
    expect(alone[0]?.hello).toMatchObject({ kind: 'hello' })
    await Promise.all([p.stop(), now.stop(), old.stop()])
  })

  it('refuses an arbiter of mesh protocol 1 with one clear log line', async () => {
    const logFile = path.join(lab.dir, 'hello3.log')
    const p = await lab.started({
      cluster: 'hello3',
      log: createLogger({ nodeId: 3, destination: logFile }),
    })
    // an older arbiter: it answers the old probe and knows nothing of the hello
    const old = await lab.rawNode()
    await old.handle(LIVENESS_PROTOCOL_V1, (stream) => {
      stream.addEventListener('message', (evt) => stream.send(evt.data))
    })
    const refused = (): boolean =>
      fs.existsSync(logFile) && fs.readFileSync(logFile, 'utf8').includes('older traktor')
    await dialRaw(old, p.addresses()[0] as string)
    await waitFor(refused, LIVE_MS, 'the refusal logged')
    const id = old.peerId.toString()
    await waitFor(() => !p.connectedPeers().includes(id), LIVE_MS, 'the old arbiter hung up')
    const line = JSON.parse(
      fs
        .readFileSync(logFile, 'utf8')
        .split('\n')
        .find((l) => l.includes('older traktor')) ?? '{}',
    )
    expect(line).toMatchObject({ level: 40, nodeId: 3, peer: id, protocol: HELLO_PROTOCOL })
    await Promise.all([p.stop(), old.stop()])
  })
})

describe('restarts and partitions', () => {
  it('partition() cuts two nodes apart and heal() brings them back', async () => {
    await waitFor(() => fullMesh([a, b, c]), 5000, 'full mesh')
    await Promise.all([a.partition([b.peerId]), b.partition([a.peerId])])
    await waitFor(
      () => !a.connectedPeers().includes(b.peerId) && !b.connectedPeers().includes(a.peerId),
      2000,
      'a and b apart',
    )
    expect(await holdsFalse(() => a.connectedPeers().includes(b.peerId), 600)).toBe(true)
    // gossip still gets from a to b, through c. Relaying is best effort (tuned for a full
    // mesh: c relays to one mesh peer, no IHAVE gossip), as heartbeats are periodic: so a
    // heartbeat every 500 ms until one arrives, as a's membership would send them
    const sentAt = Date.now()
    try {
      let lastSent = 0
      await waitFor(
        () => {
          if (Date.now() - lastSent >= 500) {
            lastSent = Date.now()
            a.publish('membership', heartbeat(a.peerId, 0)).catch(() => undefined)
          }
          return got(
            b,
            (g) => g.from === a.peerId && (g.payload as { sentAt: number }).sentAt >= sentAt - 5,
          )
        },
        LIVE_MS,
        'a heartbeat at b through c',
      )
    } finally {
      a.heal()
      b.heal()
    }
    await waitFor(() => fullMesh([a, b, c]), 5000, 'full mesh after heal')
  })

  it('keeps its identity across a restart and is reconnected by the others', async () => {
    await waitFor(() => fullMesh([a, b, c]), 5000, 'full mesh')
    const id = c.peerId
    const listen = c.addresses().map((s) => s.replace(/\/p2p\/[^/]+$/, ''))
    const { identityFile } = lab.initOf(c)
    await c.stop()
    await waitFor(
      () => !a.connectedPeers().includes(id) && !b.connectedPeers().includes(id),
      LIVE_MS,
      'a and b see c gone',
    )
    // same port and identity, no bootstrap: only the others' redialing can bring it back
    c = track(await lab.started({ identityFile, listen, bootstrap: [] }))
    expect(c.peerId).toBe(id)
    await waitFor(() => fullMesh([a, b, c]), 8000, 'full mesh after the restart')
  })

  it("dials the peers of its last run at start: the others' bootstrap is back at once", async () => {
    await waitFor(() => fullMesh([a, b, c]), LIVE_MS, 'full mesh')
    const id = a.peerId
    const listen = a.addresses().map((s) => s.replace(/\/p2p\/[^/]+$/, ''))
    const { identityFile } = lab.initOf(a)
    await a.stop()
    // kept beside the identity: the peers it reached (earlier tests' nodes too), by address
    const kept = readKnownPeers(knownPeersFile(identityFile))
    expect(kept.map((p) => p.peerId)).toEqual(expect.arrayContaining([b.peerId, c.peerId]))
    // b and c back off (a failed dial doubles the delay, up to 5 s); a has no bootstrap list
    const [fb, fc] = [b.counters().dialFailures, c.counters().dialFailures]
    await waitFor(
      () => b.counters().dialFailures >= fb + 10 && c.counters().dialFailures >= fc + 10,
      60_000,
      'b and c backing off',
    )
    a = track(await lab.started({ identityFile, listen, bootstrap: [] }))
    expect(a.peerId).toBe(id)
    const t0 = Date.now()
    await waitFor(() => fullMesh([a, b, c]), LIVE_MS, 'full mesh after the restart')
    // their next redial is seconds away by now (2-4 s seen without the file); a's own dial
    // takes a few ms, more on a loaded CI machine
    const ms = Date.now() - t0
    console.log(`the others' bootstrap back in the mesh ${ms} ms after its start`)
    expect(ms).toBeLessThan(1500)
  }, 120_000)
})

describe('many peers on one IP address', () => {
  // Regression: gossipsub scores peers down once more than 10 share an IP address. A hub with
  // 13 peers on one host (the demo, these tests, a NAT) neither relayed to them nor gossiped
  // about its messages, so members not connected to each other stopped hearing each other.
  it('still get gossip relayed through a node they share', async () => {
    const hub = await lab.started({ cluster: 'crowd' })
    const boot = bareAddress(hub)
    // eleven peers on 127.0.0.1 that are not arbiters, connected to the hub only
    const crowd = await Promise.all(Array.from({ length: 11 }, () => lab.rawNode()))
    await Promise.all(crowd.map((n) => dialRaw(n, hub.addresses()[0] as string)))
    const [p, q] = await Promise.all([
      lab.started({ cluster: 'crowd', bootstrap: [boot] }),
      lab.started({ cluster: 'crowd', bootstrap: [boot] }),
    ])
    // p and q find each other only through announcements the hub relays
    await waitFor(() => fullMesh([hub, p, q]), 5000, 'hub, p and q connected')
    expect(hub.connectedPeers()).toHaveLength(13)
    await Promise.all([p.partition([q.peerId]), q.partition([p.peerId])])
    await waitFor(() => !q.connectedPeers().includes(p.peerId), 2000, 'p and q apart')
    const relayed: GossipMessage[] = []
    q.subscribe('conflicts', (m) => relayed.push(m))
    const event = conflictEvent(1, 'crowd')
    // the hub adds q to its relay mesh on gossipsub's 1 s heartbeat: publish until one arrives
    const deadline = performance.now() + 5000
    while (!relayed.some((m) => m.from === p.peerId)) {
      expect(performance.now()).toBeLessThan(deadline)
      await p.publish('conflicts', event)
      await waitFor(() => relayed.length > 0, 250, 'relay').catch(() => {})
    }
    await Promise.all([hub.stop(), p.stop(), q.stop(), ...crowd.map(async (n) => n.stop())])
  })
})

describe('isolation', () => {
  it('counts a node that bootstraps to its own address as a founder, not isolated', async () => {
    const port = await freePort()
    const own = `/ip4/127.0.0.1/tcp/${port}`
    const lone = await lab.started({ listen: [own], bootstrap: [own], isolatedAfterMs: 300 })
    expect(await holdsFalse(() => lone.isolation().isolated, 1000)).toBe(true)
    await lone.stop()
  })

  it('isolates a node whose bootstrap peer is down, says why, and clears it once connected', async () => {
    const dead = `/ip4/127.0.0.1/tcp/${await freePort()}`
    const m = await lab.started({ bootstrap: [dead], isolatedAfterMs: 300 })
    await waitFor(() => m.isolation().isolated, LIVE_MS, 'isolated')
    const i = m.isolation()
    expect(i.reason).toContain(`(bootstrap: ${dead}); last dial error: ${dead}: `)
    expect(i.lastDialError).toMatch(/ECONNREFUSED/)
    expect(m.counters().dialFailures).toBeGreaterThanOrEqual(1)
    const visitor = await lab.rawNode()
    await dialRaw(visitor, m.addresses()[0] as string)
    await waitFor(() => !m.isolation().isolated, LIVE_MS, 'reached')
    await Promise.all([m.stop(), visitor.stop()])
  })
})

describe('inbound flood', () => {
  // Regression (issue 8): silent TCP connections held every pending-handshake slot (64, shared
  // by all hosts, 10 s each), and a new arbiter could not connect until they timed out.
  it('lets a peer in while another host holds 200 silent connections, and drops those fast', async () => {
    const target = await lab.started()
    const port = Number((target.addresses()[0] as string).split('/')[4])
    const silent: net.Socket[] = []
    const closedAt: number[] = []
    const t0 = performance.now()
    for (let i = 0; i < 200; i++) {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' })
      s.on('error', () => {})
      s.on('close', () => closedAt.push(performance.now() - t0))
      silent.push(s)
    }
    try {
      await waitFor(() => silent.every((s) => !s.connecting), 3000, 'flood connected')
      const joiner = await lab.started({ bootstrap: [bareAddress(target)] })
      const ms = await waitFor(() => fullMesh([target, joiner]), 5000, 'joined under the flood')
      expect(ms).toBeLessThan(3000)
      // every silent one is gone within the handshake deadline (3 s), none lingers for 10 s
      await waitFor(() => closedAt.length === 200, 6000, 'silent connections dropped')
      await joiner.stop()
    } finally {
      for (const s of silent) s.destroy()
      await target.stop()
    }
  })
})
