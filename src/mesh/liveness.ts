// Closes a connection whose peer stopped answering (a frozen process, a dead host, a cut
// cable) within ~1-2 s; TCP alone would take minutes. Replaces libp2p's connection monitor,
// which opens a new stream for every ping (with 64 peers, over a hundred stream negotiations a
// second) and cuts every connection at once when this node's own event loop stalls past the
// timeout. Here each connection keeps one probe stream: 8 bytes out every 500 ms, echoed back;
// no echo for 1250 ms closes the connection. Time this node spent stalled is not held against
// its peers, and a verdict waits for the I/O already received to be read.
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import type { Logger } from '../log.js'

export const LIVENESS_PROTOCOL = '/traktor/alive/1.0.0'
export const PROBE_INTERVAL_MS = 500
export const DEAD_AFTER_MS = 1250
const TICK_MS = 250
/** A tick this much later than planned means this process, not its peers, was stalled. */
const STALL_MS = 100
const PROBE_BYTES = 8
/** A peer that did not know the protocol is asked again after this long (it may have been starting). */
const UNSUPPORTED_RETRY_MS = 10_000

export interface LivenessComponents {
  node: Libp2p
  log: Logger
}

interface Probe {
  conn: Connection
  stream: Stream | undefined
  opening: boolean
  /**
   * Until when the remote is taken as one that does not speak the protocol (not an arbiter,
   * or one still starting up): nothing to judge until then
   */
  unsupportedUntil: number
  /** when the unanswered probe was sent, if one is out */
  sentAt: number | undefined
  lastSentAt: number
  awaiting: number
}

export class Liveness {
  private readonly probes = new Map<string, Probe>()
  /** when each peer last echoed a probe in full (wall clock, ms) */
  private readonly answered = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private lastTick = 0

  constructor(private readonly components: LivenessComponents) {}

  async start(): Promise<void> {
    await this.components.node.handle(LIVENESS_PROTOCOL, (stream) => echo(stream), {
      maxInboundStreams: 2,
      maxOutboundStreams: 2,
    })
    this.lastTick = performance.now()
    this.timer = setInterval(() => this.tick(), TICK_MS)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
    for (const p of this.probes.values()) p.stream?.abort(new Error('mesh stopped'))
    this.probes.clear()
    this.answered.clear()
  }

  /**
   * When this peer last answered a probe (wall clock, ms): its process runs and reads its
   * connection. The membership takes it as news of the peer, so heartbeats need not be frequent.
   */
  answeredAt(peerId: string): number | undefined {
    return this.answered.get(peerId)
  }

  private tick(): void {
    const now = performance.now()
    const stalled = now - this.lastTick - TICK_MS
    this.lastTick = now
    const open = new Set<string>()
    for (const conn of this.components.node.getConnections()) {
      if (conn.status !== 'open') continue
      open.add(conn.id)
      let p = this.probes.get(conn.id)
      if (p === undefined) {
        p = {
          conn,
          stream: undefined,
          opening: false,
          unsupportedUntil: 0,
          sentAt: undefined,
          lastSentAt: 0,
          awaiting: 0,
        }
        this.probes.set(conn.id, p)
      }
      if (p.sentAt !== undefined && stalled > STALL_MS) p.sentAt += stalled
      const idle = p.sentAt === undefined && now >= p.unsupportedUntil
      if (idle && now - p.lastSentAt >= PROBE_INTERVAL_MS) {
        this.send(p, now)
      } else if (p.sentAt !== undefined && p.stream === undefined) {
        void this.open(p) // the probe's stream went away with the probe unanswered
      }
    }
    for (const id of this.probes.keys()) if (!open.has(id)) this.probes.delete(id)
    // judge only after the poll phase has read whatever answers are already waiting
    setImmediate(() => this.judge())
  }

  private judge(): void {
    const now = performance.now()
    for (const p of this.probes.values()) {
      if (p.sentAt === undefined || now - p.sentAt < DEAD_AFTER_MS) continue
      const peer = p.conn.remotePeer.toString()
      this.components.log.warn(
        { peer, afterMs: Math.round(now - p.sentAt) },
        'peer unresponsive; closing its connection',
      )
      this.probes.delete(p.conn.id)
      p.conn.abort(new Error(`no answer to a liveness probe within ${DEAD_AFTER_MS} ms`))
    }
  }

  private send(p: Probe, now: number): void {
    p.sentAt = now
    p.lastSentAt = now
    if (p.stream === undefined) {
      void this.open(p)
      return
    }
    p.awaiting += PROBE_BYTES
    try {
      p.stream.send(crypto.getRandomValues(new Uint8Array(PROBE_BYTES)))
    } catch {
      p.stream = undefined // reopened by the next tick
    }
  }

  private async open(p: Probe): Promise<void> {
    if (p.opening || this.timer === undefined || p.conn.status !== 'open') return
    p.opening = true
    try {
      const stream = await p.conn.newStream(LIVENESS_PROTOCOL, {
        signal: AbortSignal.timeout(DEAD_AFTER_MS),
      })
      stream.addEventListener('message', (evt) => {
        p.awaiting -= evt.data.byteLength
        if (p.awaiting <= 0) {
          p.awaiting = 0
          p.sentAt = undefined
          this.answered.set(p.conn.remotePeer.toString(), Date.now())
        }
      })
      // A reset probe stream is reopened by the next tick, never from this handler: the
      // reset may be the connection going down, and yamux 8 throws an uncaught error from a
      // microtask when a stream is opened on a connection closing underneath it.
      stream.addEventListener('close', () => {
        if (p.stream === stream) p.stream = undefined
      })
      p.stream = stream
      p.awaiting = PROBE_BYTES
      stream.send(crypto.getRandomValues(new Uint8Array(PROBE_BYTES)))
    } catch (err) {
      if ((err as Error).name === 'UnsupportedProtocolError') {
        p.unsupportedUntil = performance.now() + UNSUPPORTED_RETRY_MS
        p.sentAt = undefined // it answered, so it is alive; it just cannot be probed
      }
    } finally {
      p.opening = false
    }
  }
}

// The other side: send every byte back.
function echo(stream: Stream): void {
  stream.addEventListener('message', (evt) => {
    try {
      stream.send(evt.data)
    } catch {
      // the stream is closing
    }
  })
  stream.addEventListener('remoteCloseWrite', () => {
    stream.close().catch(() => {})
  })
}
