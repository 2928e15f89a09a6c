// How much more slowly a large mesh probes its connections and judges silence. Every connection
// is probed once a period, and a probe and its answer cost both ends their trip through Noise,
// the private network's cipher and Yamux: with a member connected to every other, an idle
// node's work grows with the members, and 64 idle mesh nodes kept ~1.75 of two cores busy, 70 %
// of it those trips (a profile). Past 16 members the period, and the silence a member is
// suspected and declared dead after, grow by log2(members) − 3 (32: ×2, 64: ×3), as SWIM's
// suspicion timeout does (memberlist: a multiple of log N). A closed connection or a refused
// dial (a killed member) is judged as fast as before; only silence (a frozen one) waits longer.

export function patience(members: number): number {
  return Math.max(1, Math.log2(Math.max(members, 1)) - 3)
}
