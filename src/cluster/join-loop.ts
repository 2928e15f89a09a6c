// A node's copy of the cluster's data, attempted until it succeeds: each failed attempt starts
// over after a back-off, a lost fence (PostgreSQL restarted) starts it from its first step,
// and a refusal (rows written here as the join began) ends it. stop() aborts the attempt and
// the back-off at once and waits until no copy is writing.
import type { TraktorError } from '../errors.js'
import type { Logger } from '../log.js'
import type { LocalNode } from '../postgres/local.js'
import type { JoinCopy, RunOptions } from './join.js'
import { sleep } from './join-waits.js'

const COPY_RETRY_MS = 1000
const COPY_RETRY_MAX_MS = 10_000

export interface CopyLoopInit {
  joiner: JoinCopy
  local: LocalNode
  log: Logger
  /** the node is still copying (nobody ended it meanwhile) */
  copying: () => boolean
  /** ready, unless its sequences are not striped yet (then false: asked again) */
  becomeReady: () => Promise<boolean>
  /** the copy is done and the node ready */
  ready: () => void
  /** an attempt failed; the loop tries again */
  failed: (why: string) => void
  /** the copy is refused for good: the node is back to joining */
  refused: (why: string) => void
}

export class CopyLoop {
  private readonly init: CopyLoopInit
  private run: { abort: AbortController; done: Promise<void> } | undefined

  constructor(init: CopyLoopInit) {
    this.init = init
  }

  start(first: RunOptions): void {
    const abort = new AbortController()
    const done = this.loop(first, abort.signal).finally(async () => {
      await this.init.joiner.lowerFences().catch(() => undefined)
      if (this.run?.abort === abort) this.run = undefined
    })
    this.run = { abort, done }
  }

  async stop(): Promise<void> {
    const r = this.run
    if (!r) return
    r.abort.abort()
    await r.done
  }

  private async loop(first: RunOptions, signal: AbortSignal): Promise<void> {
    const { joiner, log } = this.init
    let opts = first
    let delay = COPY_RETRY_MS
    while (!signal.aborted && this.init.copying()) {
      try {
        if (await joiner.fenceLost()) {
          // as after a restart of the arbiter: emptied, slots made anew, fenced again
          log.warn(
            'the fence of local writers was lost (PostgreSQL restarted): the copy starts over from its first step',
          )
          await joiner.lowerFences().catch(() => undefined)
          opts = { ...opts, clear: true }
        }
        await joiner.run(signal, opts)
        // the members' slots here were made before the fence: local writers go on at once
        await joiner.release()
        while (!signal.aborted && !(await this.init.becomeReady()))
          await sleep(COPY_RETRY_MS, signal)
        this.init.ready()
        return
      } catch (err) {
        if (signal.aborted) return
        const msg = (err as Error).message
        if ((err as TraktorError).code === 'ERR_JOIN_REFUSED') {
          await this.refuse(msg)
          return
        }
        joiner.progress.lastError = msg
        this.init.failed(
          `the copy of the cluster data failed (attempt ${joiner.progress.attempt}, trying again): ${msg}`,
        )
        log.warn({ err: msg, attempt: joiner.progress.attempt }, 'join copy failed')
        await sleep(delay, signal).catch(() => undefined)
        delay = Math.min(delay * 2, COPY_RETRY_MAX_MS)
      }
    }
  }

  /** Rows written here as the join began: back to joining, as if they had been there before. */
  private async refuse(msg: string): Promise<void> {
    await this.init.joiner.lowerFences().catch(() => undefined)
    await this.init.local.joinCopy.deleteMarker()
    const dropped = await this.init.local.joinSlots.dropUnusedJoinSlots()
    this.init.refused(msg)
    this.init.log.error({ dropped }, msg)
  }
}
