// The check's calls to the members: one wave to every node at once (paced in the background),
// answers paged through to their end, and reads asked again after a transient failure.
import { TraktorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { BucketAnswer, NodeRow } from './check.js'
import { type ResultMethod, type ResultOf, resultOf, wireMethod } from './rpc-results.js'

/** background pacing: pause this many times the last wave's duration (a 5 % duty cycle) */
export const PACE_FACTOR = 19
const MAX_PACE_MS = 60_000
const DEFAULT_SYNC_TIMEOUT_MS = 10_000
const DEFAULT_STATEMENT_TIMEOUT_MS = 300_000
const READ_ATTEMPTS = 3
const PAGE_TIMEOUT_MS = 30_000

export interface CheckPort {
  /** the nodes taking part (this node first), and the members left out with the reason */
  participants(): { nodes: number[]; missing: Array<{ node: number; why: string }> }
  /** one node's check method (this node's own answered directly); throws with the reason */
  call(node: number, method: string, params: object, timeoutMs: number): Promise<unknown>
  /** every other member, best effort */
  broadcast(method: string, params: object): Promise<void>
  /** the replicated tables (schema.table) */
  tables(): Promise<string[]>
  /** this node runs the background check (the lowest live ready nodeId) */
  isLeader(): boolean
}

/** Wait `ms`, or less when `signal` aborts. */
export const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done() {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })

/** a check method's params; its statement timeout, when it has one, also bounds the call */
export type CallParams = { timeoutMs?: number; [field: string]: unknown }

export interface CheckCallsInit {
  port: CheckPort
  log: Logger
  /** the checker's current stop signal (a wait or a retry ends when it aborts) */
  stopping: () => AbortSignal
  syncTimeoutMs?: number | undefined
  statementTimeoutMs?: number | undefined
}

export class CheckCalls {
  private readonly init: CheckCallsInit
  private readonly log: Logger

  constructor(init: CheckCallsInit) {
    this.init = init
    this.log = init.log
  }

  timeouts() {
    return {
      statement: this.init.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS,
      sync: this.init.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS,
    }
  }

  /** One call to every node in parallel; paced in the background. */
  async wave<M extends ResultMethod>(
    nodes: number[],
    method: M,
    params: CallParams,
    pace: boolean,
  ): Promise<ResultOf<M>[]> {
    const t0 = Date.now()
    const timeoutMs = params.timeoutMs ?? this.timeouts().statement
    const out = await Promise.all(
      nodes.map((n) => this.callRead(n, method, params, timeoutMs + 5000)),
    )
    if (pace) {
      await sleep(Math.min(MAX_PACE_MS, (Date.now() - t0) * PACE_FACTOR), this.init.stopping())
    }
    return out
  }

  /** check.hashes on every node, each answer paged through to its end. */
  async hashWave(
    nodes: number[],
    params: CallParams,
    pace: boolean,
  ): Promise<Array<BucketAnswer & { commitTs: boolean }>> {
    const first = await this.wave(nodes, 'check.hashes', params, pace)
    return await Promise.all(
      first.map(async (a, i) => {
        const out = {
          rows: a.rows,
          commitTs: a.commitTs,
          buckets: [...a.buckets],
          counts: [...a.counts],
          hashes: [...a.hashes],
        }
        await this.restOf(nodes[i] as number, 'check.page.hashes', a.next, (p) => {
          out.buckets.push(...p.buckets)
          out.counts.push(...p.counts)
          out.hashes.push(...p.hashes)
        })
        return out
      }),
    )
  }

  /** The pages after a node's first answer, asked one after the other until the last. */
  private async restOf<M extends 'check.page.hashes' | 'check.page.rows'>(
    node: number,
    page: M,
    first: string | undefined,
    take: (p: ResultOf<M>) => void,
  ): Promise<void> {
    for (let next = first; next !== undefined; ) {
      const p = await this.callRead(node, page, { token: next }, PAGE_TIMEOUT_MS)
      take(p)
      next = p.next
    }
  }

  /** check.rows on every node, each answer paged through to its end. */
  async rowWave(nodes: number[], params: CallParams, pace: boolean): Promise<NodeRow[][]> {
    const first = await this.wave(nodes, 'check.rows', params, pace)
    return await Promise.all(
      first.map(async (a, i) => {
        const out: NodeRow[] = [...a.rows]
        await this.restOf(nodes[i] as number, 'check.page.rows', a.next, (p) => out.push(...p.rows))
        return out
      }),
    )
  }

  /**
   * A read (everything but check.repair) asked again after a transient failure: a mesh
   * connection that drops under load is dialled again, and a check should not fail for it.
   */
  async callRead<M extends ResultMethod>(
    node: number,
    method: M,
    params: object,
    timeoutMs: number,
  ): Promise<ResultOf<M>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return resultOf(
          method,
          await this.init.port.call(node, wireMethod(method), params, timeoutMs),
        )
      } catch (err) {
        // a malformed answer is not transient: not asked again
        if ((err as { code?: string }).code === 'ERR_RPC_ANSWER') throw err
        if (attempt >= READ_ATTEMPTS || this.init.stopping().aborted) {
          throw new TraktorError('ERR_CHECK_NODE', `node ${node}: ${(err as Error).message}`, {
            cause: err,
          })
        }
        this.log.debug({ node, method, err: (err as Error).message }, 'check call failed, again')
        await sleep(250 * attempt, this.init.stopping())
      }
    }
  }
}
