// Which peers a node keeps a connection to. Up to `fullMeshUpTo` members every arbiter is
// connected to every other (DESIGN §4: gossip in one hop, each member watched by all). Past it
// the mesh is sparse: a libp2p connection costs ~50 ms of CPU to make (Noise, identify, the
// streams; measured on this machine), so a full mesh of 64 (2,016 connections) took two cores
// most of two minutes to make, and its probes kept them busy afterwards. A sparse node dials
// its bootstrap peers and its ring neighbours only: the next member round the ring of sorted
// peer ids and the one halfway round, so each member is watched by about four others, any two
// members are a few hops apart, and the ring stays whole when any one member (the bootstrap
// peer too) is gone. Gossip then travels hop by hop (every connected peer relays it, see
// FullMesh), and a member is known by its signed record relayed in hellos (record-sig.ts).
// Every member computes the same ring from the same members, so both ends agree on each link.

/**
 * A cluster of up to this many members is a full mesh; past it, sparse (the default past 16
 * since 7 December, session 41). A full mesh of N members makes N(N-1)/2 connections of ~50 ms
 * of CPU each, and a start makes them while members are still being learned: every node
 * knowing fewer than this many dials all it knows. Measured in the mesh benchmark's layout on
 * two cores the same evening (`LAYOUT=bench node scripts/bench/mesh-start.mjs N`, the
 * benchmark's TRAKTOR_BENCH_FULL_MESH_UP_TO): 64 members never converged within 90 s as a full
 * mesh (178 s of CPU in 90 s), took 23-78 s with a full mesh up to 32 (the first 32 learned
 * were dialled pairwise, 50-150 s of CPU), and 6-8 s with a full mesh up to 16 (11-16 s of
 * CPU); 32 members 2.2-10.6 s as a full mesh, 2.0-3.5 s sparse. Real arbiters' own calls (a
 * join, a proposal's fan-out) still connect every pair they need; those links are not watched
 * (probeEdges), so they cost their memory only. The config's `mesh.fullMeshUpTo`
 * (TRAKTOR_BENCH_FULL_MESH_UP_TO for the benchmark) sets it.
 */
export const DEFAULT_FULL_MESH_UP_TO = 16

/**
 * A full mesh probes every connection up to this many members; past it, the edges of its ring
 * only (probeEdges). Each probe and its answer cost both ends a trip through Noise, the private
 * network's cipher and Yamux: 64 idle members probing all 2,016 connections kept 1.75 of two
 * cores busy. The other members are judged as a sparse mesh judges them (rumors.ts): by their
 * probers' suspicions, and by their connection when it closes (a killed member, found at once;
 * closed only, as patiently as silence: rumors.ts). Past 32 members by default: at 64 on two
 * cores (the mesh benchmark) idle CPU of all 64 fell from 176 % to 43-54 % of a core and a
 * killed member was seen dead by all in 0.92 s instead of 2.4 s; up to 32, where probing every
 * connection costs little (25 % for 32), nothing changes. Without the patience a 64-member
 * start flapped (connections timing out under its load; 1,202 deaths said by rumor in a minute).
 * MeshInit's probeAllUpTo (TRAKTOR_BENCH_PROBE_ALL_UP_TO in the mesh benchmark) sets it.
 */
export const DEFAULT_PROBE_ALL_UP_TO = 32

/**
 * A sparse mesh probes its ring edges only as well: its link to its bootstrap peer, or one a
 * call made (real arbiters' calls connect every pair they need), is no evidence (rumors.ts
 * judgeMember), or every member would watch every peer it ever called, at a full mesh's cost.
 *
 * The members whose connection with `self` carries liveness probes, given the live members it
 * knows of (not itself): its ring neighbours and the members whose ring neighbour it is (at most
 * four, the same pairs on both ends); undefined: every connection is probed. `members`: how
 * many other members have a record, dead ones too (as ringNeighbours).
 */
export function probeEdges(
  self: string,
  known: Iterable<string>,
  probeAllUpTo: number,
  members = 0,
): ReadonlySet<string> | undefined {
  return ringAt(self, known, probeAllUpTo, members, (n, half) => [1, half, n - 1, n - half])
}

/**
 * The peers `self` dials, given the live members it knows of (not itself); undefined: all of
 * them (a full mesh). Whether the mesh is sparse goes by `members`, how many other members it
 * holds a record of, dead ones too: a partition that leaves few alive on one side does not make
 * that side a full mesh (whose nodes say no suspicions, rumors.ts) while a node there still
 * judges a member of the other side by rumor.
 */
export function ringNeighbours(
  self: string,
  known: Iterable<string>,
  fullMeshUpTo: number,
  members = 0,
): ReadonlySet<string> | undefined {
  return ringAt(self, known, fullMeshUpTo, members, (_n, half) => [1, half])
}

/**
 * The members at these offsets round the ring of sorted peer ids (self and the live members
 * known), or undefined up to `upTo` members (dead ones counted, `members` besides self).
 */
function ringAt(
  self: string,
  known: Iterable<string>,
  upTo: number,
  members: number,
  offsets: (n: number, half: number) => number[],
): ReadonlySet<string> | undefined {
  const ring = [...new Set([self, ...known])].sort()
  const n = ring.length
  if (Math.max(n, members + 1) <= upTo) return undefined
  const i = ring.indexOf(self)
  const out = new Set<string>()
  for (const offset of offsets(n, Math.floor(n / 2))) {
    const peer = ring[(i + offset) % n]
    if (peer !== undefined && peer !== self) out.add(peer)
  }
  return out
}
