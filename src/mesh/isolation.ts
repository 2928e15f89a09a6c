// Whether this node reaches the mesh, and why not. From the inside, a wrong swarm key, a dead
// bootstrap peer and a firewall all look the same: every dial fails and nobody connects. A node
// with somewhere to go (its bootstrap list names an address that is not its own) that has been
// connected to nobody for isolatedAfterMs is isolated, and the last dial error usually says
// which of those it is. Dial failures are logged at warn, but once per target and then at most
// once a minute with a count: a peer down for a day writes a line a minute, not one per redial.
import type { MeshIsolation } from './types.js'

/** The floor of the isolation threshold (the arbiter derives it from its detector timings). */
export const DEFAULT_ISOLATED_AFTER_MS = 5000
export const DIAL_FAILURE_LOG_EVERY_MS = 60_000
const MAX_ERROR_CHARS = 300
const PSK_HINT =
  'the handshake failed: is mesh.pskFile the same private-network key on every arbiter?'
const SILENT_HINT =
  'no handshake in time: another private-network key, or not an arbiter at that address?'

export interface ReachFacts {
  now: number
  isolatedAfterMs: number
  /** bootstrap addresses that are not this node */
  bootstrap: readonly string[]
  /** connected to no peer since then; undefined while connected */
  aloneSince: number | undefined
  lastDialError: string | undefined
}

/** The mesh's own verdict: somewhere to go, and nobody reached for too long. */
export function reach(f: ReachFacts): MeshIsolation {
  const last = f.lastDialError === undefined ? {} : { lastDialError: f.lastDialError }
  if (f.bootstrap.length === 0 || f.aloneSince === undefined) return { isolated: false, ...last }
  const since = f.aloneSince + f.isolatedAfterMs
  if (f.now < since) return { isolated: false, ...last }
  // stable words (a time, not an age), so that a reason can be matched and alerted on
  const reason =
    `no peer reached since ${new Date(f.aloneSince).toISOString()} (bootstrap: ${f.bootstrap.join(', ')})` +
    (f.lastDialError === undefined ? '' : `; last dial error: ${f.lastDialError}`)
  return { isolated: true, since, reason, ...last }
}

/** A dial error in one line, with what it most likely means. */
/**
 * Every address of the dial was refused (TCP reset: nothing listens there), the strongest sign
 * that the peer's process is gone — not a timeout, which a partition or a frozen peer gives.
 */
export function dialRefused(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const inner = (err as { errors?: unknown[] }).errors
  if (Array.isArray(inner) && inner.length > 0) return inner.every(dialRefused)
  const e = err as { code?: unknown; message?: unknown; cause?: unknown }
  if (e.code === 'ECONNREFUSED') return true
  if (typeof e.message === 'string' && /\bECONNREFUSED\b/.test(e.message)) return true
  return e.cause !== undefined && e.cause !== err && dialRefused(e.cause)
}

export function describeDialError(err: unknown): string {
  const e = err instanceof Error ? err : new Error(String(err))
  // a dial of several addresses fails with every address's error inside
  const inner = (e as { errors?: unknown[] }).errors?.[0]
  const first = inner instanceof Error ? inner : e
  const text = `${first.name}: ${first.message}`.slice(0, MAX_ERROR_CHARS)
  if (first.name === 'EncryptionFailedError') return `${text} (${PSK_HINT})`
  if (first.name === 'TimeoutError' || first.name === 'AbortError')
    return `${text} (${SILENT_HINT})`
  return text
}

interface TargetFailures {
  /** failures not reported in a log line yet */
  unlogged: number
  /** failures since the last success */
  total: number
  loggedAt: number
}

/** Counts dial failures per target and says when one is worth a log line. */
export class DialFailures {
  private readonly byTarget = new Map<string, TargetFailures>()
  last: string | undefined

  /** Counts a failure; returns how many failures the log line reports, or 0 for none now. */
  failed(target: string, error: string, now: number): number {
    this.last = `${target}: ${error}`
    let t = this.byTarget.get(target)
    if (t === undefined) {
      t = { unlogged: 0, total: 0, loggedAt: Number.NEGATIVE_INFINITY }
      this.byTarget.set(target, t)
    }
    t.unlogged++
    t.total++
    if (now - t.loggedAt < DIAL_FAILURE_LOG_EVERY_MS) return 0
    const n = t.unlogged
    t.unlogged = 0
    t.loggedAt = now
    return n
  }

  /** A dial to `target` worked: returns how many failed before it (0 if none) and forgets them. */
  succeeded(target: string): number {
    const n = this.byTarget.get(target)?.total ?? 0
    this.byTarget.delete(target)
    return n
  }

  forget(target: string): void {
    this.byTarget.delete(target)
  }
}

/** Whether a dial failed for being a dial of this node itself (its own address, named otherwise). */
export function isSelfDial(err: unknown): boolean {
  return err instanceof Error && err.name === 'InvalidPeerIdError' && /dial self/i.test(err.message)
}
