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
  it('asks once for callers that come while a question is out; forget() starts a new one', async () => {
    let asked = 0
    let release: (yes: boolean) => void = () => {}
    const m = keepTrue(
      () =>
        new Promise<boolean>((resolve) => {
          asked++
          release = resolve
        }),
    )
    const first = [m.get(), m.get(), m.get()]
    expect(asked).toBe(1)
    release(true)
    expect(await Promise.all(first)).toEqual([true, true, true])
    m.forget()
    const second = m.get()
    m.forget() // the answer to a question asked before forget() is returned but not kept
    const third = m.get()
    expect(asked).toBe(3)
    release(true)
    await third
    expect(await m.get()).toBe(true)
    expect(asked).toBe(3)
    void second
  })
})
