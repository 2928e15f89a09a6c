import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { freePort } from '../../src/postgres/free-port.js'

describe('freePort', () => {
  it('gives ports below the ephemeral range, never one twice, each free to listen on', async () => {
    const ports = await Promise.all(Array.from({ length: 50 }, () => freePort()))
    expect(new Set(ports).size).toBe(50)
    for (const p of ports) {
      expect(p).toBeGreaterThanOrEqual(20_000)
      expect(p).toBeLessThan(32_768)
    }
    const srv = createServer()
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject)
      srv.listen(ports[0], '127.0.0.1', () => resolve())
    })
    await new Promise((r) => srv.close(r))
  })
})
