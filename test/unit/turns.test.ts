import { describe, expect, it } from 'vitest'
import type { Db } from '../../src/postgres/db.js'
import { oneAtATime } from '../../src/postgres/turns.js'

const tick = () => new Promise((r) => setImmediate(r))

describe('one change at a time per subscription', () => {
  it('runs calls for one name one after another, other names and servers beside them', async () => {
    const db = {} as Db
    const other = {} as Db
    const log: string[] = []
    const gates = new Map<string, () => void>()
    const job = (id: string) => () =>
      new Promise<string>((resolve) => {
        log.push(`start ${id}`)
        gates.set(id, () => {
          log.push(`end ${id}`)
          resolve(id)
        })
      })
    const a1 = oneAtATime(db, 'trktr_sub_0_1', job('a1'))
    const a2 = oneAtATime(db, 'trktr_sub_0_1', job('a2'))
    const b = oneAtATime(db, 'trktr_sub_0_2', job('b'))
    const c = oneAtATime(other, 'trktr_sub_0_1', job('c'))
    await tick()
    expect(log).toEqual(['start a1', 'start b', 'start c'])
    gates.get('a1')?.()
    await expect(a1).resolves.toBe('a1')
    await tick()
    expect(log).toContain('start a2')
    gates.get('a2')?.()
    gates.get('b')?.()
    gates.get('c')?.()
    await expect(Promise.all([a2, b, c])).resolves.toEqual(['a2', 'b', 'c'])
  })

  it('a call that fails does not hold up the next, and its error reaches its caller only', async () => {
    const db = {} as Db
    const failing = oneAtATime(db, 'slot x', async () => {
      throw new Error('tuple concurrently updated')
    })
    const next = oneAtATime(db, 'slot x', async () => 'dropped')
    await expect(failing).rejects.toThrow('tuple concurrently updated')
    await expect(next).resolves.toBe('dropped')
  })
})
