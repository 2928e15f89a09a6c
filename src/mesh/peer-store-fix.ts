// libp2p merges into its peer store the protocol of every stream it opens or accepts
// (connection.js newStream / onIncomingStream: `peerStore.merge(peer, { protocols: [p] })`):
// each time a write lock, a protobuf decode of the peer's whole record, a merge, an encode and a
// save, though after the first stream of a protocol nothing changes. A mesh's start opens a few
// streams per connection (identify, gossip, the probe, the hello): a 16-member start spent 19 %
// of its CPU in the peer store (V8 profile of `scripts/bench/mesh-start.mjs 16`). Here a merge
// of protocols alone, all of them in the peer's record as last written here, is answered with
// that record, and so is one of what nothing here reads (gossipsub's topic tags, identify's
// versions: `adds`); every other write (a merge of anything else, patch, save, delete) goes
// through, and the record it returns is kept instead (none after a delete, nor when another
// write of the peer ran meanwhile). Idempotent per store.
import type { PeerId, PeerStore } from '@libp2p/interface'

type Peer = Awaited<ReturnType<PeerStore['merge']>>
type PeerData = Parameters<PeerStore['merge']>[1]

const FIXED = Symbol.for('traktor.peer-store-fix')
/** peers kept at most (a mesh has tens; past this the list starts again) */
const MAX_PEERS = 1000

/** the metadata identify merges after its patch: the peer's agent and protocol version */
const UNREAD_METADATA = new Set(['AgentVersion', 'ProtocolVersion'])
/** the tag libp2p's reconnect queue reads (peers it dials again); other tags are not read here */
const KEEP_ALIVE = 'keep-alive'

const names = (x: unknown): string[] =>
  x instanceof Map ? [...x.keys()].map(String) : Object.keys((x as object | undefined) ?? {})

/**
 * Whether this merge may change what anything here reads of the peer: not when it asks for
 * protocols the peer is known to have already, nor for gossipsub's tags of the peers in its mesh
 * per topic (tags choose which connections the connection manager prunes past its
 * maxConnections, 300, which a mesh of at most 64 members never reaches; the keep-alive tag
 * goes through), nor for identify's agent and protocol versions (read by nothing). Each skipped
 * merge was a locked read, decode, encode and save of the peer's whole record: two per
 * connection each.
 */
export function adds(data: PeerData, known: ReadonlySet<string> | undefined): boolean {
  const keys = Object.keys(data)
  if (known === undefined || keys.length !== 1) return true
  if (keys[0] === 'protocols') return (data.protocols ?? []).some((p) => !known.has(p))
  if (keys[0] === 'tags') return names(data.tags).some((t) => t.startsWith(KEEP_ALIVE))
  if (keys[0] === 'metadata') return names(data.metadata).some((m) => !UNREAD_METADATA.has(m))
  return true
}

/** Applies the fix to one peer store; returns whether it patched now (false: done before). */
export function skipKnownProtocolMerges(store: PeerStore): boolean {
  const s = store as PeerStore & { [FIXED]?: true }
  if (s[FIXED]) return false
  s[FIXED] = true
  const kept = new Map<string, { protocols: Set<string>; peer: Peer }>()
  /** writes of each peer other than merges, counted: a merge that saw one under way keeps nothing */
  const writes = new Map<string, number>()
  const merge = store.merge.bind(store)
  store.merge = async (id: PeerId, data: PeerData, options?: Parameters<PeerStore['merge']>[2]) => {
    const key = id.toString()
    const had = kept.get(key)
    if (had !== undefined && !adds(data, had.protocols)) return had.peer
    kept.delete(key)
    const before = writes.get(key)
    const peer = await merge(id, data, options)
    if (writes.get(key) !== before) return peer
    if (kept.size >= MAX_PEERS) kept.clear()
    kept.set(key, { protocols: new Set(peer.protocols), peer })
    return peer
  }
  for (const method of ['patch', 'save', 'delete'] as const) {
    const original = (store[method] as (...args: unknown[]) => Promise<unknown>).bind(store)
    const wrapped = async (id: PeerId, ...rest: unknown[]): Promise<unknown> => {
      const key = id.toString()
      kept.delete(key)
      const count = (writes.get(key) ?? 0) + 1
      writes.set(key, count)
      if (writes.size > MAX_PEERS) writes.clear()
      const out = await original(id, ...rest)
      // the record a patch or save wrote (identify's patch names every protocol the peer speaks)
      if (method !== 'delete' && writes.get(key) === count && kept.size < MAX_PEERS) {
        const peer = out as Peer
        kept.set(key, { protocols: new Set(peer.protocols), peer })
      }
      return out
    }
    Object.assign(store, { [method]: wrapped })
  }
  return true
}
