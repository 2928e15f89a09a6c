// The functions of this folder take the pool as their first argument. The layers above call
// them through a LocalNode, bound to its pool, and never hold the pool themselves.
import type { Db } from './db.js'

/** `fns` with the pool argument bound; functions that do not take a pool first are left out. */
export type Bound<F> = {
  [K in keyof F as F[K] extends (db: Db, ...a: infer _A) => unknown ? K : never]: F[K] extends (
    db: Db,
    ...a: infer A
  ) => infer R
    ? (...a: A) => R
    : never
}

export function bindDb<F extends object>(db: Db, fns: F): Bound<F> {
  const out: Record<string, unknown> = {}
  for (const [name, fn] of Object.entries(fns)) {
    if (typeof fn === 'function')
      out[name] = (...args: unknown[]) => (fn as (...a: unknown[]) => unknown)(db, ...args)
  }
  return out as Bound<F>
}
