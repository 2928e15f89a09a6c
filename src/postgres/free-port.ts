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

/** Ports this process was given: two servers of one process never get the same one. */
const handedOut = new Set<number>()

/** A loopback port that is free now and was not given out before by this process. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW))
    if (handedOut.has(port) || !(await isFree(port))) continue
    handedOut.add(port)
    return port
  }
  throw new Error(`no free loopback port in ${PORT_LOW}-${PORT_HIGH} after ${ATTEMPTS} tries`)
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}
