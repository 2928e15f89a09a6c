import { Writable } from 'node:stream'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { stopInOrder } from '../../src/lifecycle.js'

function capture() {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(chunk.toString()))
      done()
    },
  })
  return { log: pino(sink), lines }
}

describe('stopInOrder', () => {
  it('stops each part after the one before, and names a part that is slow to stop', async () => {
    const { log, lines } = capture()
    const order: string[] = []
    await stopInOrder(
      log,
      [
        ['api', () => void order.push('api')],
        [
          'cluster',
          async () => {
            await new Promise((r) => setTimeout(r, 120))
            order.push('cluster')
          },
        ],
        ['postgres', async () => void order.push('postgres')],
      ],
      50,
    )
    expect(order).toEqual(['api', 'cluster', 'postgres'])
    const slow = lines.filter((l) => l.msg === 'still stopping')
    expect(slow.length).toBeGreaterThanOrEqual(1)
    expect(new Set(slow.map((l) => l.part))).toEqual(new Set(['cluster']))
  })

  it('a part that throws stops the sequence with its error and leaves no watchdog running', async () => {
    const { log, lines } = capture()
    const later: string[] = []
    await expect(
      stopInOrder(
        log,
        [
          ['mesh', () => Promise.reject(new Error('boom'))],
          ['postgres', () => void later.push('postgres')],
        ],
        20,
      ),
    ).rejects.toThrow('boom')
    await new Promise((r) => setTimeout(r, 60))
    expect(later).toEqual([])
    expect(lines.filter((l) => l.msg === 'still stopping')).toEqual([])
  })
})
