// Standalone mode has no mesh to say "my publication changed", so the arbiter LISTENs on
// each peer's database (with the connection string it subscribes with) and refreshes its
// subscription to that peer when the peer's arbiter NOTIFYs after a replicaset commit.
// A (re)connect also triggers a refresh, so a notification missed while away is not lost.
import pg from 'pg'
import type { Logger } from '../log.js'
import { clientConfig } from './db.js'
import type { PeerRow } from './subscriptions.js'

export const PUBLICATION_CHANNEL = 'trktr_publication'
const RETRY_MIN_MS = 500
const RETRY_MAX_MS = 30_000

interface Watch {
  conninfo: string
  client: pg.Client | undefined
  timer: NodeJS.Timeout | undefined
  retryMs: number
  closed: boolean
}

export interface PeerWatchInit {
  nodeId: number
  log: Logger
  /** called when the peer's publication may have changed ('recreated': it was dropped) */
  onChange: (peer: number, what: 'changed' | 'recreated') => void
}

export class PeerWatch {
  private readonly init: PeerWatchInit
  private readonly watches = new Map<number, Watch>()

  constructor(init: PeerWatchInit) {
    this.init = init
  }

  /** Watch exactly these peers: start new ones, stop gone ones, follow conninfo changes. */
  sync(peers: readonly PeerRow[]): void {
    const wanted = new Map(peers.map((p) => [p.nodeId, p.conninfo]))
    for (const [id, w] of this.watches) {
      if (wanted.get(id) !== w.conninfo) this.unwatch(id)
    }
    for (const [id, conninfo] of wanted) {
      if (!this.watches.has(id)) this.watch(id, conninfo)
    }
  }

  watching(): number[] {
    return [...this.watches.keys()]
  }

  async stop(): Promise<void> {
    await Promise.all([...this.watches.keys()].map((id) => this.unwatch(id)))
  }

  private watch(peer: number, conninfo: string): void {
    const w: Watch = {
      conninfo,
      client: undefined,
      timer: undefined,
      retryMs: RETRY_MIN_MS,
      closed: false,
    }
    this.watches.set(peer, w)
    void this.connect(peer, w)
  }

  private async unwatch(peer: number): Promise<void> {
    const w = this.watches.get(peer)
    if (!w) return
    this.watches.delete(peer)
    w.closed = true
    clearTimeout(w.timer)
    await w.client?.end().catch(() => undefined)
  }

  private async connect(peer: number, w: Watch): Promise<void> {
    if (w.closed) return
    const client = new pg.Client(clientConfig(w.conninfo, `traktor-${this.init.nodeId}-watch`))
    w.client = client
    const retry = () => {
      if (w.closed || w.client !== client) return
      w.client = undefined
      client.end().catch(() => undefined)
      w.timer = setTimeout(() => void this.connect(peer, w), w.retryMs)
      w.retryMs = Math.min(w.retryMs * 2, RETRY_MAX_MS)
    }
    client.on('error', retry)
    client.on('end', retry)
    client.on('notification', (n) => {
      if (n.channel === PUBLICATION_CHANNEL)
        this.init.onChange(peer, n.payload === 'recreated' ? 'recreated' : 'changed')
    })
    try {
      await client.connect()
      await client.query(`LISTEN ${PUBLICATION_CHANNEL}`)
      w.retryMs = RETRY_MIN_MS
      this.init.log.debug({ peer }, 'watching peer publication')
      this.init.onChange(peer, 'changed')
    } catch (err) {
      this.init.log.debug({ peer, err: (err as Error).message }, 'peer watch connect failed')
      retry()
    }
  }
}
