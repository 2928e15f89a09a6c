// Free loopback ports for the servers and arbiters this process starts (embedded PostgreSQL,
// the demo, the test harness, the benchmarks and the soak).
//
// Picked at random below the kernel's ephemeral range (32768-60999 by default): a port found
// by binding port 0 is an ephemeral one, and an outgoing connection can take it as its local
// port before our server listens on it (seen: a mesh port taken between probe and listen).
import { createServer } from 'node:net'

const PORT_LOW = 20_000
const PORT_HIGH = 32_000
const ATTEMPTS = 200

/**
 * The range this process picks from. The worker processes of one test run (vitest numbers them
 * 1, 2, ...: VITEST_POOL_ID) each take their own slice: two of them probing one port at about
 * the same time both found it free, and the second server to listen failed (CI: an arbiter's
 * API port, EADDRINUSE). Any other process takes the whole range.
 */
const SLICES = 4
export function portRange(pool = Number(process.env.VITEST_POOL_ID)): [number, number] {
  if (!Number.isInteger(pool) || pool < 1) return [PORT_LOW, PORT_HIGH]
  const size = Math.floor((PORT_HIGH - PORT_LOW) / SLICES)
  const low = PORT_LOW + ((pool - 1) % SLICES) * size
  return [low, low + size]
}

/** Ports this process was given: two servers of one process never get the same one. */
const handedOut = new Set<number>()

/** A loopback port that is free now and was not given out before by this process. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const [low, high] = portRange()
    const port = low + Math.floor(Math.random() * (high - low))
    if (handedOut.has(port)) continue
    // taken before the check: two calls at once drew the same port, and each found it free
    // (the other's trial listener had closed already)
    handedOut.add(port)
    if (await isFree(port)) return port
    handedOut.delete(port)
  }
  throw new Error(`no free loopback port in ${portRange().join('-')} after ${ATTEMPTS} tries`)
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}
