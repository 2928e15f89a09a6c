import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { freePort, portRange } from '../../src/postgres/free-port.js'

describe('freePort', () => {
  it('gives ports below the ephemeral range, never one twice, each free to listen on', async () => {
    // 400 at once: many draw a port another call is still trying (CI once got one twice of 50;
    // 400 found it in 3 runs of 3 before a port was taken before its check)
    const ports = await Promise.all(Array.from({ length: 400 }, () => freePort()))
    expect(new Set(ports).size).toBe(400)
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

  it("gives each of a test run's worker processes its own slice; any other process all of it", () => {
    const slices = [1, 2, 3, 4].map((pool) => portRange(pool))
    for (const [i, [low, high]] of slices.entries()) {
      expect(low).toBeGreaterThanOrEqual(20_000)
      expect(high).toBeLessThanOrEqual(32_000)
      expect(high - low).toBeGreaterThanOrEqual(2000)
      for (const [j, [l2, h2]] of slices.entries())
        if (i !== j) expect(high <= l2 || h2 <= low).toBe(true)
    }
    expect(portRange(Number.NaN)).toEqual([20_000, 32_000])
  })
})
