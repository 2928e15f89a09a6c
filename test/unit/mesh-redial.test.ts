// The redial schedule, without a network: backoff 250 ms doubling to 5 s, reset only after a
// connection that lasted; at most MAX_DIALS_IN_FLIGHT dials at once.
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2p } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it, vi } from 'vitest'
import { silentLogger } from '../../src/log.js'
import {
  type Backoff,
  due,
  failed,
  REDIAL_MAX_DELAY_MS,
  REDIAL_MIN_DELAY_MS,
  REDIAL_STABLE_MS,
} from '../../src/mesh/backoff.js'
import { probeEdges, ringNeighbours } from '../../src/mesh/overlay.js'
import {
  FULL_SETTLE_MAX_MS,
  FULL_SETTLE_MS,
  MAX_DIALS_IN_FLIGHT,
  type RedialComponents,
  Redialer,
} from '../../src/mesh/redial.js'

const fresh = (): Backoff => ({
  delay: REDIAL_MIN_DELAY_MS,
  nextAt: 0,
  inFlight: false,
  upSince: undefined,
  deferMs: 0,
})

/** `n` new peer ids, sorted (the first sorts before every other: it dials them all itself) */
async function sortedIds(n: number): Promise<string[]> {
  const ids = await Promise.all(
    Array.from({ length: n }, () => generateKeyPair('Ed25519').then(peerIdFromPrivateKey)),
  )
  return ids.map(String).sort()
}

/** A Redialer on a stand-in node, with these members, bootstrapping from `boot` */
function redialerOn(
  node: object,
  members: () => readonly string[],
  boot: string | undefined,
  over: Partial<RedialComponents> = {},
): Redialer {
  return new Redialer(
    {
      node: node as unknown as Libp2p,
      log: silentLogger(),
      counters: { dialFailures: 0 },
      isBlocked: () => false,
      members,
      ...over,
    },
    boot === undefined ? [] : [multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${boot}`)],
  )
}

describe('redial schedule', () => {
  it('dials a new target at once, then backs off 250 ms doubling to 5 s', () => {
    const b = fresh()
    expect(due(b, false, 1000)).toBe(true)
    const waits: number[] = []
    let now = 1000
    for (let i = 0; i < 8; i++) {
      failed(b, now)
      waits.push(b.nextAt - now)
      expect(due(b, false, b.nextAt - 1)).toBe(false)
      now = b.nextAt
      expect(due(b, false, now)).toBe(true)
    }
    expect(waits).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000])
    expect(REDIAL_MAX_DELAY_MS).toBe(5000)
  })

  it('never dials a connected target or one with a dial in flight', () => {
    const b = fresh()
    expect(due(b, true, 0)).toBe(false)
    const c = { ...fresh(), inFlight: true }
    expect(due(c, false, 0)).toBe(false)
  })

  it('resets the backoff once a connection has lasted, and redials at once when it drops', () => {
    const b = fresh()
    for (let i = 0; i < 5; i++) failed(b, 0)
    expect(b.delay).toBe(REDIAL_MAX_DELAY_MS)
    expect(due(b, true, 10_000)).toBe(false)
    expect(due(b, true, 10_000 + REDIAL_STABLE_MS)).toBe(false)
    expect(b.delay).toBe(REDIAL_MIN_DELAY_MS)
    expect(due(b, false, 20_000)).toBe(true)
  })

  it('lets the peer with the smaller id redial first after a drop', () => {
    const b = { ...fresh(), deferMs: 1000 }
    expect(due(b, true, 0)).toBe(false)
    expect(due(b, false, REDIAL_STABLE_MS)).toBe(false)
    expect(due(b, false, REDIAL_STABLE_MS + 1000)).toBe(true)
  })

  it('keeps backing off when connections drop right after opening (a peer that refuses us)', () => {
    const b = fresh()
    let now = 0
    for (let i = 0; i < 6; i++) {
      expect(due(b, false, now)).toBe(true)
      // the dial "succeeds", then the remote closes it 10 ms later
      b.upSince = now
      expect(due(b, false, now + 10)).toBe(false)
      now = b.nextAt
    }
    expect(b.delay).toBe(REDIAL_MAX_DELAY_MS)
  })
})

describe('redialer: dials in flight', () => {
  it(`dials at most ${MAX_DIALS_IN_FLIGHT} peers at once; the rest as those end`, async () => {
    // a stand-in for libp2p (the schedule is under test, not the network): dials that end
    // when the test says
    const pending: Array<() => void> = []
    const keys = await Promise.all(
      Array.from({ length: 21 }, () => generateKeyPair('Ed25519').then(peerIdFromPrivateKey)),
    )
    const [self, ...peers] = keys.map(String)
    const node = {
      peerId: { toString: () => self },
      getMultiaddrs: () => [],
      getConnections: () => [],
      dial: () => new Promise<void>((_, reject) => pending.push(() => reject(new Error('no')))),
    }
    const r = new Redialer(
      {
        node: node as unknown as Libp2p,
        log: silentLogger(),
        counters: { dialFailures: 0 },
        isBlocked: () => false,
      },
      [],
    )
    for (const p of peers) r.remember(p as string, [])
    r.start()
    try {
      expect(pending).toHaveLength(MAX_DIALS_IN_FLIGHT)
      for (const end of pending.splice(0, 3)) end()
      await new Promise((res) => setImmediate(res))
      r.dialNow() // a tick now: three slots are free
      expect(pending).toHaveLength(MAX_DIALS_IN_FLIGHT)
    } finally {
      r.stop()
      for (const end of pending) end()
    }
  })
})

describe('a full mesh learning its members (a start)', () => {
  it(`dials its bootstrap peer at once, the others once none was learned for ${FULL_SETTLE_MS} ms (${FULL_SETTLE_MAX_MS} ms at most)`, async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] })
    const dialed: string[] = []
    const ids = await sortedIds(8)
    // this node sorts first: it dials every peer itself (no peer's own dial is waited for)
    const [self, boot, ...others] = ids as [string, string, ...string[]]
    const node = {
      peerId: { toString: () => self },
      getMultiaddrs: () => [],
      getConnections: () => [],
      dial: (target: { toString(): string } | Array<{ toString(): string }>) => {
        const first = Array.isArray(target) ? target[0] : target
        dialed.push(String(first).split('/p2p/').at(-1) ?? '')
        return new Promise(() => {}) // in flight for the whole test
      },
    }
    let members: string[] = []
    const r = redialerOn(node, () => members, boot)
    try {
      r.start()
      expect(dialed).toEqual([boot])
      // its bootstrap peer's hello names two members, with where they listen
      const learn = (n: number) => {
        members = [boot, ...others.slice(0, n)]
        for (const p of others.slice(0, n))
          r.addPeer(p, [multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${p}`)])
      }
      learn(2)
      await vi.advanceTimersByTimeAsync(300)
      expect(dialed).toEqual([boot])
      learn(4) // more, passed on a moment later: the quiet time starts again
      await vi.advanceTimersByTimeAsync(300)
      expect(dialed).toEqual([boot])
      // (the schedule looks every 250 ms: a learned member is noted at the next tick)
      await vi.advanceTimersByTimeAsync(FULL_SETTLE_MS + 500)
      expect(new Set(dialed)).toEqual(new Set([boot, ...others.slice(0, 4)]))
      // members learned one after another without a pause (a large start): the new one is
      // dialed all the same, FULL_SETTLE_MAX_MS after the burst's first at the latest
      learn(5)
      const fifth = others[4] as string
      for (let k = 0; k < 5; k++) {
        await vi.advanceTimersByTimeAsync(200)
        members = [...members, `learned-${k}`] // (no address: not dialable)
      }
      expect(dialed).not.toContain(fifth)
      for (let k = 5; k < 12; k++) {
        await vi.advanceTimersByTimeAsync(200)
        members = [...members, `learned-${k}`]
      }
      expect(dialed).toContain(fifth)
    } finally {
      r.stop()
      vi.useRealTimers()
    }
  })
})

describe('which links a sparse mesh watches (its liveness probes)', () => {
  it('its ring edges only: not its bootstrap peer, nor a link a call made', async () => {
    const ids = await sortedIds(10)
    const [self, ...others] = ids as [string, ...string[]]
    const edges = probeEdges(self, others, 4)
    const boot = others.find((p) => !edges?.has(p)) as string
    const node = {
      peerId: { toString: () => self },
      getMultiaddrs: () => [],
      getConnections: () => [],
      dial: () => new Promise(() => {}),
    }
    const r = redialerOn(node, () => others, boot, { fullMeshUpTo: 4 })
    expect(r.neighbours()).toBeDefined() // sparse: 10 members, a full mesh up to 4
    expect(edges?.size).toBeLessThanOrEqual(4) // the next and the halfway member, both ways
    expect(r.probed()).toEqual(edges)
    expect(r.probed()?.has(boot)).toBe(false)
    // a full mesh of the same members (up to 16): every link, as before (past 32: its ring)
    const full = redialerOn(node, () => others, undefined, { fullMeshUpTo: 16 })
    expect(full.neighbours()).toBeUndefined()
    expect(full.probed()).toBeUndefined()
  })

  it('by default (no mesh.fullMeshUpTo): a full mesh of 16 members, sparse at 17', async () => {
    const ids = await sortedIds(17)
    const [self, ...others] = ids as [string, ...string[]]
    const node = {
      peerId: { toString: () => self },
      getMultiaddrs: () => [],
      getConnections: () => [],
      dial: () => new Promise(() => {}),
    }
    expect(redialerOn(node, () => others.slice(0, 15), undefined).neighbours()).toBeUndefined()
    expect(redialerOn(node, () => others, undefined).neighbours()?.size).toBe(2)
  })
})

describe('a sparse mesh hearing of members (relayed records)', () => {
  it('dials a ring neighbour it hears of at once, and looks at nothing for a member off its ring', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] })
    const ids = await sortedIds(10)
    const [self, ...others] = ids as [string, ...string[]]
    const ring = ringNeighbours(self, others, 4) as ReadonlySet<string>
    const on = others.find((p) => ring.has(p)) as string
    const off = others.find((p) => !ring.has(p)) as string
    let looks = 0 // a tick walks the connections first
    const dialed: string[] = []
    const node = {
      peerId: { toString: () => self },
      getMultiaddrs: () => [],
      getConnections: () => {
        looks++
        return []
      },
      dial: (target: { toString(): string } | Array<{ toString(): string }>) => {
        const first = Array.isArray(target) ? target[0] : target
        dialed.push(String(first).split('/p2p/').at(-1) ?? '')
        return new Promise(() => {})
      },
    }
    const r = redialerOn(node, () => others, undefined, { fullMeshUpTo: 4 })
    try {
      r.start()
      await vi.advanceTimersByTimeAsync(2000) // the ring settled (no member learned since)
      expect(r.neighbours()).toBeDefined()
      r.addPeer(off, [multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${off}`)])
      const before = looks
      r.dialNow(off) // every relayed record of a member off the ring comes here
      expect(looks).toBe(before)
      expect(dialed).not.toContain(off)
      r.addPeer(on, [multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${on}`)])
      r.dialNow(on)
      expect(looks).toBeGreaterThan(before)
      expect(dialed).toContain(on)
    } finally {
      r.stop()
      vi.useRealTimers()
    }
  })
})

describe('a full mesh past its probe-all size (its members watched by their ring only)', () => {
  it('dials its ring edges before its other peers, and those once the edges stand', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] })
    const ids = await sortedIds(12)
    // this node sorts first: it dials every peer itself (no peer's own dial is waited for)
    const [self, ...others] = ids as [string, ...string[]]
    const edges = probeEdges(self, others, 4) as ReadonlySet<string>
    const boot = others.find((p) => !edges.has(p)) as string
    const dialed: string[] = []
    const connected = new Set<string>()
    const node = {
      peerId: { toString: () => self },
      getMultiaddrs: () => [],
      getConnections: () => [...connected].map((p) => ({ remotePeer: { toString: () => p } })),
      dial: (target: { toString(): string } | Array<{ toString(): string }>) => {
        const first = Array.isArray(target) ? target[0] : target
        dialed.push(String(first).split('/p2p/').at(-1) ?? '')
        return new Promise(() => {}) // in flight for the whole test
      },
    }
    const r = redialerOn(node, () => others, boot, { probeAllUpTo: 4 })
    for (const p of others) r.addPeer(p, [multiaddr(`/ip4/127.0.0.1/tcp/2/p2p/${p}`)])
    try {
      r.start()
      await vi.advanceTimersByTimeAsync(FULL_SETTLE_MAX_MS + 500)
      expect(r.neighbours()).toBeUndefined() // a full mesh
      expect(r.probed()).toEqual(edges)
      expect(new Set(dialed)).toEqual(new Set([boot, ...edges]))
      // the edges stand: every other peer is dialed (as many at once as the limit lets)
      for (const p of edges) connected.add(p)
      await vi.advanceTimersByTimeAsync(500)
      const rest = dialed.filter((p) => p !== boot && !edges.has(p))
      expect(rest.length).toBe(MAX_DIALS_IN_FLIGHT - 1 - edges.size)
    } finally {
      r.stop()
      vi.useRealTimers()
    }
  })
})
