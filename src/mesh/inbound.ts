// A cap on the inbound connections one address may have in the handshake at once. libp2p
// counts pending (not yet encrypted) connections only globally, so 500 silent sockets from one
// host filled every slot and kept a new arbiter out until they timed out. Per host, a flood
// takes at most its share; a connection stops counting once its Noise handshake is through
// (it holds the swarm key and an identity) or once it closes. The cap still lets ~64 arbiters
// on one host (`traktor demo`, the tests) handshake with one node at the same moment.
import type { MultiaddrConnection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export const MAX_PENDING_PER_HOST = 64

/** The IP address (or other host part) of a transport address; the whole address otherwise. */
export function hostOf(addr: Multiaddr): string {
  const host = addr
    .getComponents()
    .find((c) => ['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(c.name))
  return host?.value ?? addr.toString()
}

export class PendingByHost {
  private readonly byHost = new Map<string, number>()
  private readonly counted = new WeakMap<MultiaddrConnection, string>()

  constructor(private readonly maxPerHost = MAX_PENDING_PER_HOST) {}

  /** A new inbound connection: true if its host is over the cap (deny it). */
  deny(maConn: MultiaddrConnection): boolean {
    if (maConn.status !== 'open') return false // on its way out: nothing to count
    const host = hostOf(maConn.remoteAddr)
    const n = this.byHost.get(host) ?? 0
    if (n >= this.maxPerHost) return true
    this.byHost.set(host, n + 1)
    this.counted.set(maConn, host)
    maConn.addEventListener('close', () => this.done(maConn), { once: true })
    return false
  }

  /** The connection got through the handshake, or closed: it no longer counts. */
  done(maConn: MultiaddrConnection): void {
    const host = this.counted.get(maConn)
    if (host === undefined) return
    this.counted.delete(maConn)
    const n = (this.byHost.get(host) ?? 1) - 1
    if (n <= 0) this.byHost.delete(host)
    else this.byHost.set(host, n)
  }

  /** Connections in the handshake from `host` now (tests). */
  pending(host: string): number {
    return this.byHost.get(host) ?? 0
  }
}

/**
 * Inbound connections past their handshake (the peer is known) and not closed, for a moment:
 * while a peer's connection is still being set up here, this node does not dial that peer
 * too (a second connection for the pair, redial.ts).
 */
export class Upgrading {
  private readonly byPeer = new Map<string, { conn: MultiaddrConnection; at: number }>()

  constructor(private readonly forMs: number) {}

  add(peerId: string, conn: MultiaddrConnection): void {
    this.byPeer.set(peerId, { conn, at: performance.now() })
    conn.addEventListener(
      'close',
      () => {
        if (this.byPeer.get(peerId)?.conn === conn) this.byPeer.delete(peerId)
      },
      { once: true },
    )
  }

  /** Whether a connection from this peer is being set up (or was, less than forMs ago). */
  has(peerId: string): boolean {
    const u = this.byPeer.get(peerId)
    if (u !== undefined && performance.now() - u.at < this.forMs) return true
    this.byPeer.delete(peerId)
    return false
  }
}
