// One change at a time to each subscription (and each slot) of a server. The roster's merge,
// the reconcile pass, the refresher and the resolver may act on one subscription at once, and
// two sessions altering or dropping it fail each other ("tuple concurrently updated", "does
// not exist"). Turns are kept per server (its Db) and name, in this process.
import type { Db } from './db.js'

const turns = new WeakMap<Db, Map<string, Promise<unknown>>>()

/** Run fn once every earlier call for the same server and name has ended (failed or not). */
export async function oneAtATime<T>(db: Db, name: string, fn: () => Promise<T>): Promise<T> {
  const mine = turns.get(db) ?? new Map<string, Promise<unknown>>()
  turns.set(db, mine)
  const before = mine.get(name) ?? Promise.resolve()
  const run = before.catch(() => undefined).then(fn)
  mine.set(name, run)
  try {
    return await run
  } finally {
    if (mine.get(name) === run) mine.delete(name)
  }
}
