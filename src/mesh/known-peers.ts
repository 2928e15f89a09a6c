// The peers this node last knew, kept beside its identity file (`<identityFile>.peers`). A node
// that is every other node's bootstrap peer and has none of its own dials them at once after a
// restart, instead of waiting for their redial back-off (up to 5 s). Only addresses are kept: a
// peer dialed from this file must still hold the swarm key and the peer id it is dialed as.
import fs from 'node:fs'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdIn } from './libp2p.js'

/** as many members as a cluster may have, and then some */
const MAX_PEERS = 256
const MAX_ADDRS = 16

export interface KnownPeer {
  peerId: string
  addrs: string[]
}

/** The file beside an identity file. */
export function knownPeersFile(identityFile: string): string {
  return `${identityFile}.peers`
}

/**
 * The peers in the file, each with the addresses that name it; none when there is no file.
 * A file that is not what this module writes throws (the caller says so and goes on).
 */
export function readKnownPeers(file: string): KnownPeer[] {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const parsed: unknown = JSON.parse(text)
  const list = (parsed as { peers?: unknown }).peers
  if (!Array.isArray(list)) throw new Error(`${file}: no "peers" list`)
  const out: KnownPeer[] = []
  for (const entry of list.slice(0, MAX_PEERS)) {
    const { peerId, addrs } = (entry ?? {}) as { peerId?: unknown; addrs?: unknown }
    if (typeof peerId !== 'string' || !Array.isArray(addrs)) continue
    try {
      peerIdFromString(peerId)
    } catch {
      continue
    }
    const own = addrs.slice(0, MAX_ADDRS).filter((a): a is string => {
      if (typeof a !== 'string') return false
      try {
        return peerIdIn(multiaddr(a)) === peerId
      } catch {
        return false
      }
    })
    if (own.length > 0) out.push({ peerId, addrs: own })
  }
  return out
}

/** Replace the file (a new file renamed over the old: a crash leaves one or the other). */
export function writeKnownPeers(file: string, peers: readonly KnownPeer[]): void {
  const tmp = `${file}.tmp`
  const body = { peers: peers.slice(0, MAX_PEERS), written: new Date().toISOString() }
  fs.writeFileSync(tmp, `${JSON.stringify(body)}\n`, { mode: 0o600 })
  fs.renameSync(tmp, file)
}
