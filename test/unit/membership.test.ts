// Membership alone, on a stand-in mesh that keeps the handlers and hands heartbeats to them
// (FakeMesh; the real gossip is tested in test/integration/mesh.test.ts), with Membership's
// injected clock. Its start() takes handlers and stop() gives every one back; a heartbeat
// relayed late or replayed is no news of its sender: a member seen dead stays dead until it
// says something newer (issue 14: a stopped node flapped alive → suspect → dead).
import { afterEach, describe, expect, it } from 'vitest'
import { Membership, recordDigest, stale } from '../../src/cluster/membership.js'
import type { MeshPort, PeerEvent } from '../../src/cluster/port.js'
import { silentLogger } from '../../src/log.js'
import type { GossipMessage } from '../../src/mesh/types.js'

const PEER = '12D3KooWpeer'
const started: Membership[] = []

afterEach(() => {
  for (const m of started.splice(0)) m.stop()
})

interface Records {
  wants(p: string): boolean
  record(): object | undefined
  digest(): number
  heardDigest(p: string, d: number): void
}

class FakeMesh {
  readonly peerId = '12D3KooWself'
  readonly gossip = new Set<(m: GossipMessage) => void>()
  readonly peers = new Set<(p: string, e: PeerEvent) => void>()
  addresses = () => ['/ip4/127.0.0.1/tcp/1']
  /** the heartbeats published, in order */
  readonly sent: unknown[] = []
  publish = async (_t: string, payload: unknown) => {
    this.sent.push(payload)
  }
  subscribe = (_t: string, h: (m: GossipMessage) => void) => {
    this.gossip.add(h)
    return () => this.gossip.delete(h)
  }
  onPeer = (h: (p: string, e: PeerEvent) => void) => {
    this.peers.add(h)
    return () => this.peers.delete(h)
  }
  /** what the membership hands the liveness probe (who to ask for a record; being asked) */
  records: Records | undefined
  recordRequests = (r: Records) => {
    this.records = r
    return () => {
      this.records = undefined
    }
  }
  /** when PEER last answered the liveness probe (undefined: never) */
  answered: number | undefined
  answeredAt = (p: string) => (p === PEER ? this.answered : undefined)
}

/**
 * A full mesh past its probe-all size that does not probe PEER (overlay.ts probeEdges): PEER
 * is judged by its connection and its probers' word (rumors.ts byConnection).
 */
class RingFakeMesh extends FakeMesh {
  connected = true
  refused: number | undefined
  /** whether PEER is on this node's ring (probed here), and heard on its probe yet */
  watched = false
  heardOnProbe = true
  sparse = () => false
  rumors = () => true
  probes = (p: string) => p !== PEER || this.watched
  met = (p: string) => p !== PEER || this.heardOnProbe
  connectedPeers = () => (this.connected ? [PEER] : [])
  refusedAt = (p: string) => (p === PEER ? this.refused : undefined)
}

function setup(mesh = new FakeMesh()) {
  let clock = 0
  const m = new Membership({
    mesh: mesh as unknown as MeshPort,
    nodeId: 0,
    postgres: 'host=127.0.0.1',
    version: '0',
    timings: { heartbeatMs: 1000, suspectAfterMs: 2000, deadAfterMs: 3000 },
    log: silentLogger(),
    now: () => clock,
    self: () => ({ joinState: 'ready', replicasetVersion: 0, rosterVersion: 0, postgresUp: true }),
  })
  m.start()
  started.push(m)
  return {
    m,
    mesh,
    heartbeat: (incarnation: number, sentAt: number, seq?: number) => {
      const payload = {
        v: 1,
        kind: 'heartbeat',
        nodeId: 1,
        peerId: PEER,
        postgres: 'host=127.0.0.1 port=5433',
        version: '0',
        incarnation,
        state: 'ready',
        replicasetVersion: 0,
        addrs: [],
        sentAt,
        ...(seq === undefined ? {} : { seq }),
      }
      for (const h of mesh.gossip) h({ topic: 'membership', from: PEER, payload } as GossipMessage)
    },
    /** the clock moves on, and the detector looks again (as its timer would) */
    at: (ms: number) => {
      clock = ms
      for (const h of mesh.peers) h(PEER, 'connect')
    },
    state: () => m.members().find((x) => x.nodeId === 1)?.state,
    /** the clock moves on and the membership's tick runs (no peer event) */
    tick: (ms: number) => {
      clock = ms
      ;(m as unknown as { tick(): void }).tick()
    },
  }
}

describe('Membership lifecycle', () => {
  it('stop() releases what start() subscribed to', () => {
    const { m, mesh } = setup()
    expect([mesh.gossip.size, mesh.peers.size]).toEqual([1, 1])
    m.stop()
    expect([mesh.gossip.size, mesh.peers.size]).toEqual([0, 0])
    // and again: a second start takes one of each, not two
    m.start()
    expect([mesh.gossip.size, mesh.peers.size]).toEqual([1, 1])
  })
})

describe('membership: a new peer hears from us', () => {
  it('floods nothing when a peer connects or subscribes: the peer gets the record straight (hello)', () => {
    const { mesh } = setup()
    const before = mesh.sent.length // start() announced once
    for (const h of mesh.peers) h(PEER, 'connect')
    for (const h of mesh.peers) h(PEER, 'subscribed')
    expect(mesh.sent.length).toBe(before)
    const record = mesh.records?.record() as { kind: string; nodeId: number; seq: number }
    expect(record).toMatchObject({ kind: 'heartbeat', nodeId: 0, state: 'ready' })
    // numbered like the gossiped ones: a receiver orders them all by one counter
    const next = mesh.records?.record() as { seq: number }
    expect(next.seq).toBe(record.seq + 1)
  })
})

describe('membership: stale heartbeats', () => {
  it('a dead member stays dead when an old heartbeat of its run arrives late', () => {
    const t = setup()
    t.heartbeat(5, 1000)
    expect(t.state()).toBe('alive')
    t.at(3500)
    expect(t.state()).toBe('dead')
    t.heartbeat(5, 1000) // the same one again
    t.heartbeat(5, 900) // an older one
    t.at(3600)
    expect(t.state()).toBe('dead')
    t.heartbeat(5, 4500) // news: it is alive after all
    expect(t.state()).toBe('alive')
  })

  it('a restarted member is taken whatever its incarnation once the old run is dead', () => {
    const t = setup()
    t.heartbeat(5, 1000)
    t.heartbeat(4, 1100) // an older run while the newer is alive: ignored
    t.at(3500)
    expect(t.state()).toBe('dead')
    t.heartbeat(4, 200) // a new run on a host whose clock went back
    expect(t.state()).toBe('alive')
  })

  it('orders by the counter where the sender has one: a clock stepped back is still news', () => {
    const t = setup()
    t.heartbeat(5, 1000, 7)
    t.at(2500)
    expect(t.state()).toBe('suspect')
    t.heartbeat(5, 400, 8) // its clock stepped back; its counter did not
    expect(t.state()).toBe('alive')
    t.at(6000)
    t.heartbeat(5, 9000, 8) // the same counter again, whatever its clock says
    expect(t.state()).toBe('dead')
  })

  it('stale(): newer in the same run, or a later run, is news; the rest is not', () => {
    const alive = { incarnation: 5, sentAt: 1000, seq: undefined, state: 'alive' as const }
    expect(stale({ incarnation: 5, sentAt: 1000 }, alive)).toBe(true)
    expect(stale({ incarnation: 5, sentAt: 999 }, alive)).toBe(true)
    expect(stale({ incarnation: 5, sentAt: 1001 }, alive)).toBe(false)
    expect(stale({ incarnation: 6, sentAt: 1 }, alive)).toBe(false)
    expect(stale({ incarnation: 4, sentAt: 9999 }, alive)).toBe(true)
    expect(stale({ incarnation: 4, sentAt: 9999 }, { ...alive, state: 'dead' })).toBe(false)
  })
})

describe('a member heard through the liveness probe (issue 14: fewer heartbeats)', () => {
  it('stays alive while it answers probes, though its heartbeats stop', () => {
    const { mesh, heartbeat, at, state } = setup()
    heartbeat(100, 0, 0)
    expect(state()).toBe('alive')
    for (const t of [1000, 2500, 4000, 5500]) {
      mesh.answered = t
      at(t + 200)
      expect(state(), `at ${t + 200} ms`).toBe('alive')
    }
    // the probes go unanswered: silence counts again
    at(5500 + 3000)
    expect(state()).toBe('dead')
  })

  it('without the probe the same silence is death (the evidence is what keeps it alive)', () => {
    const { heartbeat, at, state } = setup()
    heartbeat(100, 0, 0)
    at(4200)
    expect(state()).toBe('dead')
  })

  it('a dead member is not revived by a probe answer: only a heartbeat says what it is now', () => {
    const { mesh, heartbeat, at, state } = setup()
    heartbeat(100, 0, 0)
    at(3500)
    expect(state()).toBe('dead')
    mesh.answered = 3600
    at(3700)
    expect(state()).toBe('dead')
    heartbeat(101, 3800, 0)
    expect(state()).toBe('alive')
  })
})

describe('a member judged by its connection (a full mesh probing its ring only)', () => {
  it('is dead once its connection closed and a dial is refused, though its record came since', () => {
    const mesh = new RingFakeMesh()
    const { heartbeat, tick, state } = setup(mesh)
    heartbeat(100, 0, 0)
    tick(100)
    expect(state()).toBe('alive')
    // its connection closes; its newest record reaches this node afterwards, relayed by a peer
    mesh.connected = false
    tick(200)
    for (const h of mesh.peers) h(PEER, 'disconnect')
    heartbeat(100, 300, 1)
    mesh.refused = 400
    tick(500)
    expect(state()).toBe('dead')
  })

  it("is judged again as soon as the knock at its closed connection's port answers", () => {
    const mesh = new RingFakeMesh()
    mesh.watched = true
    const { heartbeat, tick, state } = setup(mesh)
    heartbeat(100, 0, 0)
    mesh.answered = 100
    tick(100)
    mesh.connected = false
    for (const h of mesh.peers) h(PEER, 'disconnect')
    expect(state()).toBe('suspect')
    // refused: its process is gone — dead now, not at the membership's next tick
    mesh.refused = 110
    for (const h of mesh.peers) h(PEER, 'knocked')
    expect(state()).toBe('dead')
  })

  // a partition's first second: the member's newest record, relayed by a peer, reaches this
  // node after its connection closed; its prober says it dead of the older record it holds
  it("is dead by its probers' word though its record, relayed, came after the close", () => {
    const mesh = new RingFakeMesh()
    const { heartbeat, tick, state, m } = setup(mesh)
    heartbeat(100, 0, 5)
    tick(100)
    mesh.connected = false
    for (const h of mesh.peers) h(PEER, 'disconnect')
    tick(150)
    heartbeat(100, 150, 9)
    tick(200)
    expect(state()).toBe('alive')
    const dead = { v: 1, kind: 'suspicion', peerId: '12D3KooWprober', of: PEER, state: 'dead' }
    const s = { ...dead, incarnation: 100, seq: 5 }
    for (const h of mesh.gossip) h({ topic: 'membership', from: s.peerId, payload: s } as never)
    tick(300)
    expect(state()).toBe('dead')
    expect(m.members()[0]?.lastHeardMs).toBe(0)
  })

  // a stall of this process moves the member's lastHeardMs on (its silence then is not its
  // own): past the close, and its probers' word of an older record was no longer taken
  it("is dead by its probers' word after this process stalled past the close", () => {
    const mesh = new RingFakeMesh()
    const { heartbeat, tick, state, m } = setup(mesh)
    heartbeat(100, 0, 9)
    tick(50)
    mesh.connected = false
    tick(100)
    for (const h of mesh.peers) h(PEER, 'disconnect')
    ;(m as unknown as { lastTickAt: number }).lastTickAt = performance.now() - 1000
    tick(400)
    expect(m.members()[0]?.lastHeardMs).toBeGreaterThan(100)
    const s = { v: 1, kind: 'suspicion', peerId: '12D3KooWprober', of: PEER, state: 'dead' }
    const told = { ...s, incarnation: 100, seq: 5 }
    for (const h of mesh.gossip) h({ topic: 'membership', from: s.peerId, payload: told } as never)
    tick(500)
    expect(state()).toBe('dead')
  })

  it('stays dead off the ring once found dead on it, though its record came after the close', () => {
    const mesh = new RingFakeMesh()
    mesh.watched = true
    mesh.heardOnProbe = false
    const { heartbeat, tick, state } = setup(mesh)
    heartbeat(100, 0, 0)
    tick(50)
    mesh.connected = false
    tick(100)
    for (const h of mesh.peers) h(PEER, 'disconnect')
    tick(150)
    heartbeat(100, 150, 1)
    tick(2200)
    expect(state()).toBe('dead')
    // dead, it leaves this node's ring (made of live members): judged by rumor, it stays dead
    mesh.watched = false
    tick(2450)
    expect(state()).toBe('dead')
    tick(2700)
    expect(state()).toBe('dead')
  })

  it('is alive again once connected again', () => {
    const mesh = new RingFakeMesh()
    const { heartbeat, tick, state } = setup(mesh)
    heartbeat(100, 0, 0)
    mesh.connected = false
    for (const h of mesh.peers) h(PEER, 'disconnect')
    mesh.refused = 50
    tick(100)
    expect(state()).toBe('dead')
    mesh.connected = true
    mesh.refused = undefined
    for (const h of mesh.peers) h(PEER, 'connect')
    heartbeat(100, 200, 1)
    tick(300)
    expect(state()).toBe('alive')
  })
})

describe('deaths said to the mesh (a full mesh probing its ring only)', () => {
  const said = (mesh: FakeMesh) =>
    mesh.sent.filter((p) => (p as { kind?: string }).kind === 'suspicion')

  /** PEER on this node's ring, known by its record; `heard`: answered its probe at 100 ms */
  function ringEdge(heard: boolean) {
    const mesh = new RingFakeMesh()
    mesh.watched = true
    mesh.heardOnProbe = heard
    const s = setup(mesh)
    s.heartbeat(100, 0, 0)
    if (heard) mesh.answered = 100
    s.tick(100)
    const closes = () => {
      mesh.connected = false
      for (const h of mesh.peers) h(PEER, 'disconnect')
    }
    return { ...s, mesh, closes }
  }

  // the members that do not watch it hold it by its watchers' word, whatever their own links to
  // it do: so a close that stays closed is said as a silence is (a close of a moment, two
  // dials that crossed or a timeout under load, finds its port open: silence, rumors.ts)
  it('a ring edge not heard on yet that closes and stays closed is said dead', () => {
    const { mesh, closes, tick, state } = ringEdge(false)
    closes()
    tick(2200)
    expect(state()).toBe('dead')
    expect(said(mesh)).toMatchObject([{ of: PEER, state: 'dead' }])
  })

  it('a ring edge heard on that closes and stays closed is said dead too', () => {
    const { mesh, closes, tick, state } = ringEdge(true)
    closes()
    tick(2200)
    expect(state()).toBe('dead')
    expect(said(mesh)).toMatchObject([{ of: PEER, state: 'dead' }])
  })

  it("a ring edge's silence found by its probe is said", () => {
    const { mesh, tick, state } = ringEdge(true)
    tick(3200)
    expect(state()).toBe('dead')
    expect(said(mesh)).toMatchObject([{ of: PEER, state: 'dead' }])
  })
})

describe('records asked for through the liveness probe (issue 14: no periodic heartbeat)', () => {
  it('asks an unknown peer and a dead member for its record, not a live one', () => {
    const { mesh, heartbeat, at, state } = setup()
    expect(mesh.records?.wants(PEER)).toBe(true) // never heard
    heartbeat(100, 0, 0)
    expect(mesh.records?.wants(PEER)).toBe(false)
    at(3500)
    expect(state()).toBe('dead')
    expect(mesh.records?.wants(PEER)).toBe(true)
  })

  it('hands the hooks back at stop()', () => {
    const { m, mesh } = setup()
    expect(mesh.records).toBeDefined()
    m.stop()
    expect(mesh.records).toBeUndefined()
  })
})

describe('the record digest the probe carries (a change whose gossip was missed)', () => {
  it('is the same computed from the record sent and from the record received, and moves with it', () => {
    const { mesh } = setup()
    const sent = mesh.records?.record() as Parameters<typeof recordDigest>[0]
    expect(mesh.records?.digest()).toBe(recordDigest(sent))
    // what the receiver holds went through JSON and the schema: same digest
    expect(recordDigest(JSON.parse(JSON.stringify(sent)))).toBe(recordDigest(sent))
    const moved = recordDigest({ ...sent, replicasetVersion: sent.replicasetVersion + 1 })
    expect(moved).not.toBe(recordDigest(sent))
    expect(moved).toBeGreaterThanOrEqual(1)
    expect(moved).toBeLessThanOrEqual(127)
  })

  it('asks a live member whose probe says its record changed, until the new record arrives', () => {
    const { mesh, heartbeat } = setup()
    heartbeat(100, 0, 0)
    const held = recordDigest({
      nodeId: 1,
      postgres: 'host=127.0.0.1 port=5433',
      version: '0',
      incarnation: 100,
      state: 'ready',
      replicasetVersion: 0,
    })
    mesh.records?.heardDigest(PEER, held)
    expect(mesh.records?.wants(PEER)).toBe(false)
    mesh.records?.heardDigest(PEER, held === 127 ? 1 : held + 1) // it changed; we missed it
    expect(mesh.records?.wants(PEER)).toBe(true)
    mesh.records?.heardDigest(PEER, 0) // 0: a probe without a digest says nothing
    expect(mesh.records?.wants(PEER)).toBe(true)
  })
})
