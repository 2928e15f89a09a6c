// Free loopback ports for the servers and arbiters this process starts (embedded PostgreSQL,
// the demo, the test harness).
import { createServer } from 'node:net'

/** Ports this process was given: two probes in a row may get the same port from the kernel. */
const handedOut = new Set<number>()

/** A free loopback port, never one this process was given before (e.g. a mesh and an API port). */
export async function freePort(): Promise<number> {
  for (let tries = 0; ; tries++) {
    const port = await probePort()
    if (!handedOut.has(port) || tries >= 100) {
      handedOut.add(port)
      return port
    }
  }
}

function probePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}
