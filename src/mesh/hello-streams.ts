// The streams hellos travel on. Hello 1.1.0 keeps one stream per connection and direction: its
// sender writes hello after hello on it, length-prefixed, for as long as the connection stands,
// and its receiver reads them in turn. A hello then costs one data frame; as a stream of its own
// (hello 1.0.0) it cost a stream's opening, its protocol selection both ways, the peer store's
// merge of the protocol at each end and the close — the hellos were the bootstrap node's
// largest share of a 16-member start's CPU (15 % of its process in a profile). A peer that
// speaks 1.0.0 only (traktor before 8 December 2026, session 42) is sent a stream per hello.
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils'

export const HELLO_PROTOCOL = '/traktor/hello/1.0.0'
export const HELLO_KEPT_PROTOCOL = '/traktor/hello/1.1.0'

interface Outbound {
  stream: Stream
  lp: LengthPrefixedStream<Stream>
}

/** A peer's kept stream, being opened (`out` undefined) or open. */
interface Entry {
  opening: Promise<Outbound | undefined>
  out?: Outbound
}

export class HelloStreams {
  private readonly kept = new Map<string, Entry>()
  /** the peers whose connection speaks hello 1.0.0 only */
  private readonly oneShot = new Set<string>()

  constructor(
    private readonly node: Libp2p,
    private readonly maxBytes: number,
  ) {}

  /**
   * Sends one hello's bytes: on the peer's kept stream (opened if there is none, and opened
   * again once if it broke), or on a stream of its own to a peer of hello 1.0.0. Throws what
   * the open threw (UnsupportedProtocolError: the peer speaks neither, or is still starting).
   */
  async send(peer: PeerId, bytes: Uint8Array, signal: AbortSignal): Promise<void> {
    const id = peer.toString()
    for (let broke = 0; ; ) {
      if (this.oneShot.has(id)) return await this.sendAlone(peer, bytes, signal)
      const out = await this.keptStream(peer, signal)
      if (out === undefined) continue // it speaks 1.0.0 only: oneShot has it now
      try {
        await out.lp.write(bytes, { signal })
        return
      } catch (err) {
        this.drop(id, out)
        if (++broke > 1) throw err
      }
    }
  }

  /** The peer's connection closed: its stream went with it. */
  forget(id: string): void {
    this.kept.delete(id)
    this.oneShot.delete(id)
  }

  stop(): void {
    for (const e of this.kept.values()) e.out?.stream.abort(new Error('hello: stopped'))
    this.kept.clear()
    this.oneShot.clear()
  }

  /** The peer's kept stream; undefined: the peer speaks hello 1.0.0 only. */
  private async keptStream(peer: PeerId, signal: AbortSignal): Promise<Outbound | undefined> {
    const id = peer.toString()
    let entry = this.kept.get(id)
    if (entry === undefined) {
      const opening = this.node
        .dialProtocol(peer, [HELLO_KEPT_PROTOCOL, HELLO_PROTOCOL], { signal })
        .then(async (stream) => {
          if (stream.protocol === HELLO_KEPT_PROTOCOL) {
            const out = { stream, lp: lpStream(stream, { maxDataLength: this.maxBytes }) }
            if (this.kept.get(id) === e) e.out = out
            return out
          }
          this.oneShot.add(id)
          await stream.close({ signal }).catch((err: Error) => stream.abort(err))
          return undefined
        })
      const e: Entry = { opening }
      entry = e
      this.kept.set(id, e)
      opening.then(
        (out) => out === undefined && this.kept.get(id) === e && this.kept.delete(id),
        () => this.kept.get(id) === e && this.kept.delete(id),
      )
    }
    const out = await entry.opening
    if (out === undefined || out.stream.writeStatus === 'writable') return out
    this.drop(id, out)
    return await this.keptStream(peer, signal)
  }

  private async sendAlone(peer: PeerId, bytes: Uint8Array, signal: AbortSignal): Promise<void> {
    const stream = await this.node.dialProtocol(peer, HELLO_PROTOCOL, { signal })
    await lpStream(stream, { maxDataLength: this.maxBytes }).write(bytes, { signal })
    await stream.close({ signal })
  }

  private drop(id: string, out: Outbound): void {
    if (this.kept.get(id)?.out === out) this.kept.delete(id)
    out.stream.abort(new Error('hello: the stream broke'))
  }
}
