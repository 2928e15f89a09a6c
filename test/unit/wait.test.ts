// The shared poll loops (src/wait.ts): waiting for something, and proving something does not
// happen over a window.
import { describe, expect, it } from 'vitest'
import { holdsThroughout, waitFor } from '../../src/wait.js'

describe('waitFor', () => {
  it('returns the first truthy value, and names what it waited for when time runs out', async () => {
    let n = 0
    expect(await waitFor(() => ++n >= 3 && n, 1000, 'three tries', 1)).toBe(3)
    await expect(waitFor(() => false, 30, 'nothing', 5)).rejects.toThrow(
      /timed out after 30 ms waiting for nothing/,
    )
  })
})

describe('holdsThroughout', () => {
  it('looks again and again for the whole window, and passes when the condition always held', async () => {
    let looks = 0
    const start = Date.now()
    await holdsThroughout(() => ++looks > 0, 100, 'always', 10)
    expect(Date.now() - start).toBeGreaterThanOrEqual(100)
    expect(looks).toBeGreaterThan(4)
  })

  it('fails at the first look that does not hold, mid-window, naming it', async () => {
    const start = Date.now()
    await expect(
      holdsThroughout(() => Date.now() - start < 40, 1000, 'a quiet table', 5),
    ).rejects.toThrow(/a quiet table did not hold \d+ ms into 1000 ms/)
    expect(Date.now() - start).toBeLessThan(500)
  })

  it('takes an error thrown by the condition as not holding, with its message', async () => {
    const cond = async (): Promise<boolean> => {
      throw new Error('server gone')
    }
    await expect(holdsThroughout(cond, 100, 'x')).rejects.toThrow(/x did not hold .*: server gone/)
  })
})
