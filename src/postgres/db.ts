// The arbiter's connection to its own PostgreSQL: one small pool, named connections
// (application_name traktor-<nodeId>-<purpose>), server errors kept with their SQLSTATE.
import pg from 'pg'
import { TraktorError } from '../errors.js'
import { getParam, parseConninfo } from '../libpq/conninfo.js'

export type Row = Record<string, unknown>
export type Queryable = Pick<pg.ClientBase, 'query'>

/**
 * A query the arbiter runs over and over (every second or so): sent as a named prepared
 * statement, so each pooled session parses it once, and plans it once when it has no
 * parameters (else PostgreSQL settles on one plan after a few runs), not at every run: the
 * idle arbiter's queries cost its server ~10 ms a second, half of it parsing and planning.
 * Static text only (a statement is kept per session and name); its result columns must not
 * depend on a table's definition (no `*`), or a changed table would fail it.
 */
export interface Prepared {
  readonly name: string
  readonly text: string
}

const preparedNames = new Set<string>()

/** Declare a prepared query (at module load: one name, one text). */
export function prepared(name: string, text: string): Prepared {
  if (preparedNames.has(name)) throw new Error(`prepared query ${name} declared twice`)
  preparedNames.add(name)
  return { name: `trktr_${name}`, text }
}

/** A session taken from the pool and kept (a lock that outlives one query); release once. */
export interface HeldSession extends Queryable {
  /** back to the pool, or closed (destroy) when its state is unknown; repeats are ignored */
  release(destroy?: boolean): void
}

/** pg's client options from a libpq connection string (key/value or URI). */
export function clientConfig(conninfo: string, applicationName: string): pg.ClientConfig {
  const params = parseConninfo(conninfo)
  const get = (k: string) => getParam(params, k)
  const sslmode = get('sslmode')
  const port = get('port')
  const timeout = get('connect_timeout')
  const config: pg.ClientConfig = {
    host: get('hostaddr') ?? get('host') ?? 'localhost',
    database: get('dbname') ?? get('user'),
    application_name: applicationName,
    ...(port === undefined ? {} : { port: Number(port) }),
    ...(get('user') === undefined ? {} : { user: get('user') }),
    ...(get('password') === undefined ? {} : { password: get('password') }),
    ...(timeout === undefined
      ? { connectionTimeoutMillis: 10_000 }
      : {
          connectionTimeoutMillis: Number(timeout) * 1000,
        }),
    ...(get('options') === undefined ? {} : { options: get('options') }),
  }
  if (sslmode !== undefined && sslmode !== 'disable' && sslmode !== 'allow') {
    config.ssl =
      sslmode === 'verify-full' || sslmode === 'verify-ca' ? {} : { rejectUnauthorized: false }
  }
  return config
}

/** Wrap a pg error so callers branch on `sqlState` (SQLSTATE) or `code`. */
export function pgError(err: unknown, what: string): TraktorError {
  if (err instanceof TraktorError) return err
  const e = err as { code?: unknown; message?: unknown; detail?: unknown }
  const sqlState = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined
  const detail = typeof e.detail === 'string' ? ` (${e.detail})` : ''
  const msg = typeof e.message === 'string' ? e.message : String(err)
  return new TraktorError(
    sqlState ? 'ERR_POSTGRES' : 'ERR_POSTGRES_CONNECTION',
    `${what}: ${msg}${detail}`,
    {
      cause: err,
      ...(sqlState === undefined ? {} : { sqlState }),
    },
  )
}

export interface Listener {
  readonly alive: boolean
  close(): Promise<void>
}

export interface DbInit {
  conninfo: string
  nodeId: number
  purpose: string
  max?: number
}

export class Db {
  private pool: pg.Pool | undefined
  private readonly init: DbInit
  /** takers of two sessions queue here, so none holds one while waiting for the second */
  private pairs: Promise<unknown> = Promise.resolve()
  /** sessions handed out by hold() and not released yet */
  private readonly held = new Set<() => void>()

  constructor(init: DbInit) {
    this.init = init
  }

  start(): void {
    if (this.pool) return
    const config = clientConfig(
      this.init.conninfo,
      `traktor-${this.init.nodeId}-${this.init.purpose}`,
    )
    this.pool = new pg.Pool({
      ...config,
      // the arbiter's own writes never wait for synchronous peers (sync mode, or a database
      // default of remote_apply): a dead peer must not stall the part that removes it
      options: [config.options, '-c synchronous_commit=local'].filter(Boolean).join(' '),
      max: this.init.max ?? 6,
      idleTimeoutMillis: 30_000,
    })
    // an idle client losing its server must not crash the process; the next query reconnects
    this.pool.on('error', () => {})
  }

  /**
   * End the pool. A session still held (its taker forgot it, or was stopped mid-way) is closed
   * first: the pool's end waits for every session out of it, and would wait for ever. Returns
   * how many were closed so (the caller says so: one is a bug).
   */
  async stop(): Promise<number> {
    const pool = this.pool
    this.pool = undefined
    const left = this.held.size
    for (const close of [...this.held]) close()
    await pool?.end()
    return left
  }

  private get p(): pg.Pool {
    if (!this.pool) throw new TraktorError('ERR_NOT_STARTED', 'database pool is not started')
    return this.pool
  }

  async query<R extends Row = Row>(sql: string | Prepared, params: unknown[] = []): Promise<R[]> {
    try {
      if (typeof sql === 'string') return (await this.p.query<R>(sql, params)).rows
      return (await this.p.query<R>({ name: sql.name, text: sql.text, values: params })).rows
    } catch (err) {
      throw pgError(err, 'PostgreSQL')
    }
  }

  /**
   * Run fn in one transaction; rolled back on any error. `prelude`: statements sent with the
   * BEGIN in one round trip (simple protocol, so no parameters: static text and quoted names
   * only), for a step that a proposal waits on.
   */
  async tx<T>(fn: (c: Queryable) => Promise<T>, prelude: readonly string[] = []): Promise<T> {
    const client = await this.connect()
    try {
      await client.query(['BEGIN', ...prelude].join(';\n'))
      const out = await fn(client)
      await client.query('COMMIT')
      return out
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw pgError(err, 'transaction')
    } finally {
      client.release()
    }
  }

  /**
   * Statements in one transaction sent in one round trip (simple protocol, no parameters:
   * static text and quoted names only); rolled back on any error.
   */
  async script(statements: readonly string[]): Promise<void> {
    const client = await this.connect()
    try {
      await client.query(['BEGIN', ...statements, 'COMMIT'].join(';\n'))
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw pgError(err, 'transaction')
    } finally {
      client.release()
    }
  }

  /**
   * LISTEN on a channel on a connection of its own (not the pool's); `onNotify` for every
   * notification, with its payload. `alive` turns false when that connection ends (a server restart): listen
   * again. The channel is a static name of ours (it is not quoted).
   */
  async listen(channel: string, onNotify: (payload: string) => void): Promise<Listener> {
    const config = clientConfig(
      this.init.conninfo,
      `traktor-${this.init.nodeId}-${this.init.purpose}-listen`,
    )
    const client = new pg.Client(config)
    let alive = true
    const gone = () => {
      alive = false
    }
    client.on('error', gone)
    client.on('end', gone)
    client.on('notification', (n) => onNotify(n.payload ?? ''))
    try {
      await client.connect()
      await client.query(`LISTEN ${channel}`)
    } catch (err) {
      await client.end().catch(() => {})
      throw pgError(err, `listen ${channel}`)
    }
    return {
      get alive() {
        return alive
      },
      close: async () => {
        alive = false
        await client.end().catch(() => {})
      },
    }
  }

  /** A session of the pool, kept until released (for a lock that must outlive one query). */
  async hold(): Promise<HeldSession> {
    const client = await this.connect()
    let released = false
    const release = (destroy = false) => {
      if (released) return
      released = true
      this.held.delete(close)
      client.release(destroy)
    }
    const close = () => release(true)
    this.held.add(close)
    return { query: client.query.bind(client) as Queryable['query'], release }
  }

  /**
   * Two sessions kept until released (a lock held in one while the other runs a command that
   * cannot run in a transaction). Taken one pair at a time: several takers each holding one
   * session of a small pool and waiting for a second would wait for ever.
   */
  async holdTwo(): Promise<[HeldSession, HeldSession]> {
    const taken = this.pairs.then(async () => {
      const first = await this.hold()
      try {
        return [first, await this.hold()] as [HeldSession, HeldSession]
      } catch (err) {
        first.release()
        throw err
      }
    })
    this.pairs = taken.catch(() => undefined)
    return taken
  }

  /** A dedicated session (for origin-tagged repairs or commands that need their own session). */
  async session<T>(fn: (c: Queryable) => Promise<T>): Promise<T> {
    const client = await this.connect()
    try {
      return await fn(client)
    } catch (err) {
      throw pgError(err, 'session')
    } finally {
      client.release(true)
    }
  }

  private async connect(): Promise<pg.PoolClient> {
    let client: pg.PoolClient
    try {
      client = await this.p.connect()
    } catch (err) {
      throw pgError(err, 'connect')
    }
    // A session out of the pool that loses its server between queries (a shutdown, a
    // terminated backend) emits 'error'; without a listener that crashes the process (the
    // soak saw it with the lww engine's kept session). Its next query fails instead, and the
    // pool drops a client whose connection is gone when it comes back.
    const onError = () => {}
    client.on('error', onError)
    const release = client.release.bind(client)
    client.release = (destroy?: Error | boolean) => {
      client.removeListener('error', onError)
      release(destroy)
    }
    return client
  }
}
