// The pure parts of a sparse mesh (issue 14): which peers a node dials (overlay.ts), the
// member's own signature on its record (record-sig.ts), and how a member this node does not
// probe is judged from what others say of it (rumors.ts).
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import {
  judgeByRumor,
  judgeMember,
  RETELL_EVERY_MS,
  RETELL_FOR_MS,
  Suspicions,
  withSuspicion,
} from '../../src/cluster/rumors.js'
import { silentLogger } from '../../src/log.js'
import {
  DEFAULT_FULL_MESH_UP_TO,
  DEFAULT_PROBE_ALL_UP_TO,
  probeEdges,
  ringNeighbours,
} from '../../src/mesh/overlay.js'
import { canonicalJson, signRecord, verifyRecord } from '../../src/mesh/record-sig.js'

const ids = (n: number): string[] =>
  Array.from({ length: n }, (_, i) => `peer${String(i).padStart(3, '0')}`)

describe('the ring (overlay.ts)', () => {
  it('is a full mesh up to fullMeshUpTo members, this node counted', () => {
    const all = ids(DEFAULT_FULL_MESH_UP_TO)
    expect(ringNeighbours(all[0] as string, all.slice(1), DEFAULT_FULL_MESH_UP_TO)).toBeUndefined()
    const more = ids(DEFAULT_FULL_MESH_UP_TO + 1)
    expect(ringNeighbours(more[0] as string, more.slice(1), DEFAULT_FULL_MESH_UP_TO)).toBeDefined()
  })

  it('stays sparse when a partition leaves no more alive than a full mesh holds', () => {
    // 10 members known, 4 of them alive on this side: the ring of the 4, still sparse (a full
    // mesh says no suspicions, and a node there judging the other side by rumor would wait)
    const all = ids(10)
    const side = all.slice(1, 4)
    expect(ringNeighbours(all[0] as string, side, 4)).toBeUndefined()
    const ring = ringNeighbours(all[0] as string, side, 4, 9)
    expect([...(ring ?? [])].sort()).toEqual(['peer001', 'peer002'])
  })

  it('a large full mesh probes its ring edges only: at most four, the same pairs on both ends', () => {
    const all = ids(64)
    const edges = (i: number) =>
      probeEdges(
        all[i] as string,
        all.filter((_, j) => j !== i),
        16,
      ) ?? new Set<string>()
    expect([...edges(0)].sort()).toEqual(['peer001', 'peer032', 'peer063'])
    for (let i = 0; i < 64; i++) {
      expect(edges(i).size).toBeLessThanOrEqual(4)
      for (const p of edges(i)) expect(edges(all.indexOf(p)).has(all[i] as string)).toBe(true)
    }
    // up to the probe-all size every connection is probed; dead members count for the size
    expect(probeEdges('peer000', ids(16).slice(1), 16)).toBeUndefined()
    expect(probeEdges('peer000', ids(16).slice(1, 4), 16, 20)?.size).toBe(3)
    // by default every connection is watched up to 32 members, the ring's only past it
    expect(probeEdges('peer000', ids(32).slice(1), DEFAULT_PROBE_ALL_UP_TO)).toBeUndefined()
    expect(probeEdges('peer000', all.slice(1), DEFAULT_PROBE_ALL_UP_TO)?.size).toBe(3)
  })

  it('dials the next member round the ring and the one halfway round, the same on every node', () => {
    const all = ids(64)
    const of = (i: number): ReadonlySet<string> =>
      ringNeighbours(
        all[i] as string,
        all.filter((_, j) => j !== i),
        8,
      ) ?? new Set()
    expect([...of(0)].sort()).toEqual(['peer001', 'peer032'])
    expect([...of(63)].sort()).toEqual(['peer000', 'peer031'])
    // the order members are learned in does not matter
    const shuffled = [...all.slice(1)].reverse()
    expect(ringNeighbours('peer000', shuffled, 8)).toEqual(of(0))
  })

  it('keeps every member reachable when any one member is gone, in few hops', () => {
    for (const n of [9, 16, 33, 64]) {
      const all = ids(n)
      const links = new Map<string, Set<string>>(all.map((p) => [p, new Set()]))
      for (const p of all) {
        for (const q of ringNeighbours(p, all, 8) ?? []) {
          links.get(p)?.add(q)
          links.get(q)?.add(p) // a connection carries gossip both ways
        }
      }
      const degrees = all.map((p) => links.get(p)?.size ?? 0)
      expect(Math.max(...degrees)).toBeLessThanOrEqual(4)
      for (const gone of all) {
        const start = all.find((p) => p !== gone) as string
        const hops = new Map([[start, 0]])
        const queue = [start]
        while (queue.length > 0) {
          const p = queue.shift() as string
          for (const q of links.get(p) ?? [])
            if (q !== gone && !hops.has(q)) {
              hops.set(q, (hops.get(p) ?? 0) + 1)
              queue.push(q)
            }
        }
        expect(hops.size).toBe(n - 1)
        expect(Math.max(...hops.values())).toBeLessThanOrEqual(Math.ceil(n / 2))
      }
    }
  })
})

describe("a member's signed record (record-sig.ts)", () => {
  const record = (peerId: string) => ({
    v: 1 as const,
    kind: 'heartbeat' as const,
    nodeId: 7,
    peerId,
    postgres: "host=db port=5432 dbname=app application_name='x y'",
    version: '1.0.0',
    incarnation: 1_733_000_000_000,
    state: 'ready' as const,
    replicasetVersion: 3,
    commit: { mode: 'sync' as const, quorum: 2, changed: 5 },
    addrs: ['/ip4/127.0.0.1/tcp/4001'],
    sentAt: 1_733_000_000_500,
    seq: 12,
  })

  it('verifies for anyone who passes it on, whatever the order of its keys', async () => {
    const key = await generateKeyPair('Ed25519')
    const signed = await signRecord(record(peerIdFromPrivateKey(key).toString()), key)
    expect(verifyRecord(signed)).toBe(true)
    // a receiver's schema may rebuild it with its keys in another order
    const reordered = JSON.parse(canonicalJson(signed)) as typeof signed
    expect(Object.keys(reordered)[0]).toBe('addrs')
    expect(verifyRecord(reordered)).toBe(true)
  })

  it('fails when a field was changed, when it was signed by another member, or is not signed', async () => {
    const key = await generateKeyPair('Ed25519')
    const other = await generateKeyPair('Ed25519')
    const me = peerIdFromPrivateKey(key).toString()
    const signed = await signRecord(record(me), key)
    expect(verifyRecord({ ...signed, state: 'removed' })).toBe(false)
    expect(verifyRecord({ ...signed, seq: 13 })).toBe(false)
    expect(verifyRecord({ ...signed, addrs: ['/ip4/10.0.0.66/tcp/4001'] })).toBe(false)
    // another member's key over a record that names me
    const forged = await signRecord(record(me), other)
    expect(verifyRecord(forged)).toBe(false)
    const { sig: _, ...unsigned } = signed
    expect(verifyRecord(unsigned)).toBe(false)
    expect(verifyRecord({ ...signed, sig: 'not base64 !' })).toBe(false)
    expect(verifyRecord({ ...signed, peerId: 'not-a-peer-id' })).toBe(false)
  })
})

describe('a member judged by rumor (rumors.ts)', () => {
  const t = { heartbeatMs: 500, suspectAfterMs: 1000, deadAfterMs: 2000 }
  const silentDeadMs = 600_000

  it('is alive while nothing is said of its record, dead once its record is too old', () => {
    expect(judgeByRumor({ seq: 4, lastHeardMs: 0 }, 599_999, t, silentDeadMs)).toBe('alive')
    expect(judgeByRumor({ seq: 4, lastHeardMs: 0 }, 600_000, t, silentDeadMs)).toBe('dead')
  })

  it('is suspect when a prober says so, then dead unless a newer record clears it', () => {
    const rumor = withSuspicion(undefined, { seq: 4, state: 'suspect' }, 4, 1000)
    expect(rumor).toEqual({ state: 'suspect', seq: 4, atMs: 1000 })
    expect(judgeByRumor({ rumor, seq: 4, lastHeardMs: 0 }, 1999, t, silentDeadMs)).toBe('suspect')
    expect(judgeByRumor({ rumor, seq: 4, lastHeardMs: 0 }, 2000, t, silentDeadMs)).toBe('dead')
    // the member answered with a newer record (seq 5): the suspicion is of an older one
    expect(judgeByRumor({ rumor, seq: 5, lastHeardMs: 1500 }, 2000, t, silentDeadMs)).toBe('alive')
  })

  it('takes dead over suspect, keeps when it was first said, and ignores news of older records', () => {
    const suspect = withSuspicion(undefined, { seq: 4, state: 'suspect' }, 4, 1000)
    // said again by another prober: the clock does not restart
    expect(withSuspicion(suspect, { seq: 4, state: 'suspect' }, 4, 1500)).toBe(suspect)
    const dead = withSuspicion(suspect, { seq: 4, state: 'dead' }, 4, 1200)
    expect(dead?.state).toBe('dead')
    expect(judgeByRumor({ rumor: dead, seq: 4, lastHeardMs: 0 }, 1201, t, silentDeadMs)).toBe(
      'dead',
    )
    expect(withSuspicion(dead, { seq: 4, state: 'suspect' }, 4, 1300)).toBe(dead)
    // a suspicion of a record older than the one held is no news
    expect(withSuspicion(undefined, { seq: 3, state: 'dead' }, 4, 1000)).toBeUndefined()
  })
})

describe('a death a sparse mesh node found itself (rumors.ts Suspicions)', () => {
  const told: Array<{ of: string; incarnation: number; seq: number; state: string }> = []
  let now = 10_000
  const suspicions = new Suspicions({
    mesh: {
      peerId: 'me',
      sparse: () => true,
      publish: async (_topic: string, s: unknown) => {
        told.push(s as { of: string; incarnation: number; seq: number; state: string })
      },
    } as never,
    log: silentLogger(),
    now: () => now,
    own: () => ({ incarnation: 1, lastSeq: 0 }),
    refute: () => {},
  })
  const a = { peerId: 'a', incarnation: 7, seq: 3 }
  const b = { peerId: 'b', incarnation: 8, seq: 2 }
  const tick = (ms: number) => {
    now += ms
    suspicions.repeat()
  }

  it('is said again every few seconds for half a minute (gossip is not kept for latecomers)', () => {
    suspicions.say(a, 'dead')
    expect(told).toEqual([
      { v: 1, kind: 'suspicion', peerId: 'me', of: 'a', incarnation: 7, seq: 3, state: 'dead' },
    ])
    tick(RETELL_EVERY_MS - 1)
    expect(told).toHaveLength(1)
    tick(1)
    expect(told).toHaveLength(2)
    let said = 2
    while (now - 10_000 < RETELL_FOR_MS) {
      tick(RETELL_EVERY_MS)
      if (now - 10_000 <= RETELL_FOR_MS) said++
    }
    expect(told).toHaveLength(said)
    tick(RETELL_EVERY_MS)
    expect(told).toHaveLength(said)
  })

  it('is said of the run and record it was found in, whatever the member holds later', () => {
    told.length = 0
    const c = { peerId: 'c', incarnation: 9, seq: 4 }
    suspicions.say(c, 'dead')
    // the member restarted: the record held here now is of its new run
    Object.assign(c, { incarnation: 10, seq: 0 })
    tick(RETELL_EVERY_MS)
    expect(told.map((s) => [s.of, s.incarnation, s.seq])).toEqual([
      ['c', 9, 4],
      ['c', 9, 4],
    ])
    suspicions.alive('c')
  })

  it('is no longer said once the member is alive again', () => {
    told.length = 0
    suspicions.say(b, 'dead')
    suspicions.alive('b')
    tick(RETELL_EVERY_MS)
    expect(told.map((s) => s.of)).toEqual(['b'])
  })
})

describe('the deaths a large full mesh says (rumors.ts Suspicions)', () => {
  it("are its probers': a member this node does not probe saw the connection close itself", () => {
    const said: string[] = []
    const s = new Suspicions({
      mesh: {
        peerId: 'me',
        sparse: () => false,
        rumors: () => true,
        probes: (p: string) => p === 'a',
        publish: async (_t: string, m: unknown) => {
          said.push((m as { of: string }).of)
        },
      } as never,
      log: silentLogger(),
      now: () => 0,
      own: () => ({ incarnation: 1, lastSeq: 0 }),
      refute: () => {},
    })
    s.say({ peerId: 'a', incarnation: 1, seq: 1 }, 'dead')
    s.say({ peerId: 'b', incarnation: 1, seq: 1 }, 'dead')
    expect(said).toEqual(['a'])
  })
})

describe('a member judged from the mesh (rumors.ts judgeMember)', () => {
  const t = { heartbeatMs: 500, suspectAfterMs: 1000, deadAfterMs: 2000 }
  const member = () => ({ peerId: 'p', state: 'alive' as const, lastHeardMs: 0 })

  it('by its probe when connected: an answer is news of it, silence past the limits is not', () => {
    const probed = { answeredAt: () => 5000, sparse: () => true }
    const r = member()
    expect(judgeMember(r, 5500, probed, t, 3)).toEqual({ state: 'alive', byRumor: false })
    expect(r.lastHeardMs).toBe(5000)
    expect(judgeMember(member(), 2500, { answeredAt: () => undefined }, t, 3).state).toBe('dead')
  })

  it('by rumor in a sparse mesh when neither probed, dialed nor disconnected here', () => {
    const sparse = { answeredAt: () => undefined, sparse: () => true }
    expect(judgeMember(member(), 2500, sparse, t, 40)).toEqual({ state: 'alive', byRumor: true })
    const failing = { ...sparse, dialFailedAt: () => 100 }
    expect(judgeMember(member(), 10_000, failing, t, 40)).toEqual({ state: 'dead', byRumor: false })
  })

  it('by rumor in a full mesh until first heard on its probe here, then by its probe', () => {
    // known from a record its bootstrap peer passed on at 0, never heard on the probe here
    let met = false
    let answered: number | undefined
    const full = { answeredAt: () => answered, met: () => met }
    const r = member()
    expect(judgeMember(r, 2500, full, t, 8)).toEqual({ state: 'alive', byRumor: true })
    // a connection of a moment closed (two dials crossed): no news of the member
    expect(judgeMember({ ...r, disconnectedAtMs: 2000 }, 2500, full, t, 8).state).toBe('alive')
    // heard at 5000: from now on its probe decides
    met = true
    answered = 5000
    expect(judgeMember(r, 5100, full, t, 8)).toEqual({ state: 'alive', byRumor: false })
    expect(judgeMember(r, 7100, full, t, 8).state).toBe('dead')
    // a dial failing before it was ever heard is silence from the failure
    const failing = { answeredAt: () => undefined, met: () => false, dialFailedAt: () => 3000 }
    expect(judgeMember(member(), 3500, failing, t, 8)).toEqual({ state: 'alive', byRumor: false })
    expect(judgeMember(member(), 5100, failing, t, 8)).toEqual({ state: 'dead', byRumor: false })
    // a mesh that does not say (an older port): the probe's evidence alone, as before
    expect(judgeMember(member(), 2500, { answeredAt: () => undefined }, t, 8).state).toBe('dead')
  })

  it('on a connection a large full mesh does not probe: by rumor, dead at once if refused', () => {
    const quiet = {
      answeredAt: () => undefined,
      met: () => false,
      probes: () => false,
      rumors: () => true,
    }
    // connected, nothing said of it: alive by rumor, however long since its last record
    expect(judgeMember(member(), 60_000, quiet, t, 64)).toEqual({ state: 'alive', byRumor: true })
    // its probers said it dead (a rumor of its current record)
    const said = { ...member(), seq: 3, rumor: { state: 'dead' as const, seq: 3, atMs: 50_000 } }
    expect(judgeMember(said, 60_000, quiet, t, 64)).toEqual({ state: 'dead', byRumor: true })
    // its connection closed at 59,000 and is not made again (a 64-member start on two cores: a
    // timeout, dials that crossed): no evidence, its probers say what it is
    const closed = { ...member(), disconnectedAtMs: 59_000 }
    for (const at of [59_100, 62_000, 120_000])
      expect(judgeMember(closed, at, quiet, t, 64)).toEqual({ state: 'alive', byRumor: true })
    expect(judgeMember({ ...said, disconnectedAtMs: 59_000 }, 60_000, quiet, t, 64).state).toBe(
      'dead',
    )
    // dead at once when its port then refuses a knock or a dial (its process is gone)
    const refused = { ...quiet, refusedAt: () => 59_050 }
    expect(judgeMember(closed, 59_100, refused, t, 64)).toEqual({
      state: 'dead',
      byRumor: false,
      byConnection: true,
    })
    // a ring edge just made (probed, not heard on it yet): by rumor while it stands, not by its
    // old silence
    const edge = { ...quiet, probes: () => true }
    expect(judgeMember(member(), 60_000, edge, t, 64)).toEqual({ state: 'alive', byRumor: true })
    // closed: suspect at once, dead as patiently as silence at 64 members (3 × 1 s)
    expect(judgeMember(closed, 59_100, edge, t, 64)).toEqual({ state: 'suspect', byRumor: false })
    expect(judgeMember(closed, 61_900, edge, t, 64).state).toBe('suspect')
    expect(judgeMember(closed, 62_000, edge, t, 64).state).toBe('dead')
    expect(judgeMember(closed, 59_100, { ...edge, refusedAt: () => 59_050 }, t, 64).state).toBe(
      'dead',
    )
    // its port found open after the close (a knock), or a knock still out (a killed member's
    // port refuses within a moment): its process runs, the close is silence from then
    const open = { ...edge, listeningAt: () => 59_010 }
    expect(judgeMember(closed, 61_900, open, t, 64).state).toBe('alive')
    expect(judgeMember(closed, 62_000, open, t, 64).state).toBe('suspect')
    expect(judgeMember(closed, 65_000, open, t, 64).state).toBe('dead')
    expect(judgeMember(closed, 59_100, { ...edge, knocking: () => true }, t, 64).state).toBe(
      'alive',
    )
    const openThenRefused = { ...open, refusedAt: () => 59_050 }
    expect(judgeMember(closed, 59_100, openThenRefused, t, 64).state).toBe('dead')
    // heard on it: its probe decides
    const heard = { ...edge, met: () => true, answeredAt: () => 59_900 }
    expect(judgeMember(member(), 60_000, heard, t, 64)).toEqual({ state: 'alive', byRumor: false })
  })

  it('dead at once when its connection closed and a dial of it is refused, at any size', () => {
    const r = { ...member(), disconnectedAtMs: 100 }
    const mesh = { answeredAt: () => undefined, refusedAt: () => 150 }
    expect(judgeMember(r, 150, mesh, t, 64).state).toBe('dead')
  })

  it('a closed connection whose peer’s port still listens counts as silence, not a close', () => {
    // heard last at 0; its connection closed at 1,310 (closed for silence at one end); a knock
    // right after found its port open: its process runs
    const r = { ...member(), disconnectedAtMs: 1310 }
    const mesh = { answeredAt: () => undefined, sparse: () => true, listeningAt: () => 1320 }
    // 64 members: silence is judged three times as patiently (suspect 3 s, dead 6 s)
    expect(judgeMember(r, 2500, mesh, t, 64).state).toBe('alive')
    expect(judgeMember(r, 3100, mesh, t, 64).state).toBe('suspect')
    expect(judgeMember(r, 6100, mesh, t, 64).state).toBe('dead')
    // no knock answered (another host, unreachable): a close — suspect at once, dead soon
    const closed = { answeredAt: () => undefined, sparse: () => true }
    expect(judgeMember(r, 1400, closed, t, 64).state).toBe('suspect')
    expect(judgeMember(r, 2400, closed, t, 64).state).toBe('dead')
    // refused at its address after the close: its process is gone, at once
    expect(judgeMember(r, 1400, { ...closed, refusedAt: () => 1320 }, t, 64).state).toBe('dead')
    // a port found open before this close (an earlier one's knock): a close
    expect(judgeMember(r, 2400, { ...mesh, listeningAt: () => 900 }, t, 64).state).toBe('dead')
    // up to 16 members: dead after 2 s of silence, as a close made it before
    expect(judgeMember(r, 1900, mesh, t, 8).state).toBe('suspect')
    expect(judgeMember(r, 2000, mesh, t, 8).state).toBe('dead')
  })

  it('in a sparse mesh, a connection of a moment closing is silence from the close', () => {
    // known by a record relayed 4 s ago, never heard on its probe here; connected, then closed
    const r = { ...member(), disconnectedAtMs: 4000 }
    const unmet = { answeredAt: () => undefined, sparse: () => true, met: () => false }
    expect(judgeMember(r, 4100, unmet, t, 64).state).toBe('alive')
    expect(judgeMember(r, 7000, unmet, t, 64).state).toBe('suspect')
    expect(judgeMember(r, 10_000, unmet, t, 64).state).toBe('dead')
    // refused at its address after the close: gone, at once
    expect(judgeMember(r, 4100, { ...unmet, refusedAt: () => 4010 }, t, 64).state).toBe('dead')
    // heard on its probe before (met): a close is a close, judged against its last answer
    const met = { ...unmet, met: () => true }
    expect(judgeMember(r, 4100, met, t, 64).state).toBe('dead')
  })
  it('in a sparse mesh, a link that is not a ring edge here is no evidence but for a refusal', () => {
    // a member this node holds a link to (a call made it, or it is this node's bootstrap peer)
    // but does not probe: the link closed at 4,000, a knock found the port open or said nothing
    const r = { ...member(), disconnectedAtMs: 4000 }
    const call = { answeredAt: () => undefined, sparse: () => true, probes: () => false }
    for (const at of [4100, 10_000, 60_000])
      expect(judgeMember(r, at, { ...call, listeningAt: () => 4010 }, t, 64).state).toBe('alive')
    expect(judgeMember(r, 60_000, call, t, 64)).toEqual({ state: 'alive', byRumor: true })
    // its probers' word still counts
    const said = { ...r, rumor: { state: 'dead' as const, seq: 0, atMs: 5000 } }
    expect(judgeMember(said, 5100, call, t, 64).state).toBe('dead')
    // refused at its address after the close: its process is gone, at once (not said on)
    expect(judgeMember(r, 4100, { ...call, refusedAt: () => 4010 }, t, 64)).toEqual({
      state: 'dead',
      byRumor: false,
      byConnection: true,
    })
    // found dead here on its ring edge, it left the ring (made of live members): still dead
    // while nothing is heard of it since its link closed
    const found = { ...r, state: 'dead' as const }
    expect(judgeMember(found, 60_000, call, t, 64).state).toBe('dead')
    expect(judgeMember({ ...found, lastHeardMs: 4500 }, 60_000, call, t, 64).state).toBe('alive')
    // heard before the close, lastHeardMs moved past it by a stall of this process (held alive
    // for a moment in between): no news, still dead — not dead and alive in turn for good
    const stalled = { ...found, lastHeardMs: 4500, heardMs: 3900 }
    expect(judgeMember(stalled, 60_000, call, t, 64).state).toBe('dead')
    expect(judgeMember({ ...stalled, heardMs: 4500 }, 60_000, call, t, 64).state).toBe('alive')
    // a refusal from before a newer record (a restart on the same port): no evidence
    const back = { ...r, lastHeardMs: 4500 }
    expect(judgeMember(back, 4600, { ...call, refusedAt: () => 4010 }, t, 64).state).toBe('alive')
  })
})
