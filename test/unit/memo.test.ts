import { describe, expect, it } from 'vitest'
import { keepTrue } from '../../src/postgres/memo.js'

describe('keepTrue', () => {
  it('keeps a yes for its time, asks again after a no, after the time, and after forget()', async () => {
    let clock = 0
    let answer = false
    let asked = 0
    const m = keepTrue(
      async () => {
        asked++
        return answer
      },
      5000,
      () => clock,
    )
    expect(await m.get()).toBe(false)
    expect(await m.get()).toBe(false)
    expect(asked).toBe(2) // a no is never kept
    answer = true
    expect(await m.get()).toBe(true)
    clock = 4999
    answer = false
    expect(await m.get()).toBe(true)
    expect(asked).toBe(3) // kept
    clock = 5000
    expect(await m.get()).toBe(false)
    expect(asked).toBe(4)
    answer = true
    await m.get()
    m.forget()
    answer = false
    expect(await m.get()).toBe(false)
    expect(asked).toBe(6)
  })
})
