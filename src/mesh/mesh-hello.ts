// A mesh's hello (hello.ts): the membership's record, the full mesh's peers, the records a
// sparse mesh passes on; what comes in goes to the membership's handlers and the full mesh.

import { MAX_ANNOUNCED_ADDRS, type MembershipHeartbeat } from './codec.js'
import type { FullMesh } from './full-mesh.js'
import type { Gossip } from './gossip.js'
import { type HelloComponents, HelloExchange } from './hello.js'
import { type MeshNode, ownAddresses } from './libp2p.js'
import { verifyRecord } from './record-sig.js'
import type { RecordRequests } from './types.js'

export type { HelloExchange }

/**
 * A mesh's hello: its record from the membership (when one runs), the peers of its full mesh;
 * a record received goes to the membership topic's handlers, peers named to the full mesh.
 */
export function meshHello(
  components: HelloComponents,
  parts: {
    records(): RecordRequests | undefined
    fullMesh: FullMesh
    gossip: Gossip
    sign(record: MembershipHeartbeat): Promise<MembershipHeartbeat>
  },
): HelloExchange {
  const { fullMesh, gossip } = parts
  const { log, node } = components
  const exchange: HelloExchange = new HelloExchange(components, {
    record: async (fresh) => {
      const r = parts.records()?.record(fresh) as MembershipHeartbeat | undefined
      return r === undefined ? undefined : await parts.sign(r)
    },
    // a sparse mesh names no peers: the records it passes on carry their addresses
    peers: (to) => (fullMesh.sparse() ? [] : fullMesh.connectedPeers(to)),
    self: () => ({
      peerId: node.peerId.toString(),
      addrs: ownAddresses(node as MeshNode).slice(0, MAX_ANNOUNCED_ADDRS),
    }),
    // a sparse mesh passes every record on; a full mesh only the members a peer behind this
    // node has not shown it knows (a start: every member learns the others from its bootstrap
    // peer in a hello, not from connections to each, which take seconds to make)
    relayed: (to) => {
      const all = (parts.records()?.relayable?.() ?? []) as MembershipHeartbeat[]
      if (fullMesh.sparse()) return all
      return exchange.behind(to) ? all.filter((r) => !exchange.knows(to, r.peerId)) : []
    },
    members: () => parts.records()?.relayable?.().length ?? 0,
    isNew: (id) => parts.records()?.known?.(id) === false,
    relayTo: (from) => !fullMesh.sparse() && exchange.behind(from),
    onRecord: (from, record) => {
      // a member this node did not know: its peers may not know it either
      const news = parts.records()?.known?.(from) === false
      gossip.deliverDirect(from, 'membership', record)
      if (fullMesh.sparse()) exchange.push()
      else if (news) exchange.push('relay')
    },
    onPeers: (_from, peers) => fullMesh.heardAll(peers),
    onRelayed: (from, records) => {
      let bad = 0
      for (const r of records) {
        // the member's own signature, or it is not passed to the membership at all
        if (r.peerId === node.peerId.toString()) continue
        if (verifyRecord(r)) gossip.deliverDirect(r.peerId, 'membership', r)
        else bad++
      }
      if (bad > 0)
        log.warn({ peer: from, bad }, 'hello: relayed records with a bad signature dropped')
    },
  })
  return exchange
}
