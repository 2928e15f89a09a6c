// Figures anyone can reproduce (issue 16): the READMEs' benchmark tables are generated from
// bench/results.json and must match it; a miss counts in n; a target is met on the raw value.
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = path.resolve(import.meta.dirname, '../..')
// .mjs scripts carry no types: imported through a string, they are `any` to the type checker
const load = (p: string) => import(path.join(ROOT, p))

describe('benchmark figures', () => {
  it("the READMEs' tables are exactly what table.mjs makes of bench/results.json", async () => {
    const t = await load('scripts/bench/table.mjs')
    const want = t.markdown(JSON.parse(fs.readFileSync(t.RESULTS, 'utf8')))
    for (const readme of t.READMES) {
      const block = t.currentBlock(fs.readFileSync(readme, 'utf8'))
      expect(block, `${readme}: run node scripts/bench/table.mjs --write`).toBe(want)
    }
  })

  it('replaces only the marked block, and refuses a file without one', async () => {
    const t = await load('scripts/bench/table.mjs')
    const text = `intro\n${t.BEGIN}\nold\n${t.END}\noutro\n`
    expect(t.replaceBlock(text, 'new')).toBe(`intro\n${t.BEGIN}\nnew\n\n${t.END}\noutro\n`)
    expect(() => t.replaceBlock('no markers', 'x', 'X.md')).toThrow(/X\.md has no/)
  })

  it('counts a miss in n, and the statistic it falls on is a miss, not a number', async () => {
    const u = await load('scripts/bench/util.mjs')
    const f = u.figure({
      name: 'dead seen',
      unit: 'ms',
      samples: [900, 950, Number.POSITIVE_INFINITY, Number.NaN],
      target: { stat: 'p95', max: 1000 },
    })
    expect(f).toMatchObject({ n: 3, misses: 1, p50: 950, p95: null, pass: false })
    expect(f.samples).toEqual([900, 950, null])
    const t = await load('scripts/bench/table.mjs')
    expect(t.markdown({ machine: {}, runs: [], figures: [f] })).toMatch(
      /\| dead seen \| ms \| 950 \| miss \| {2}\| 3 \(1 missed\) \| p95 ≤ 1000 ms \| \*\*no\*\* \|/,
    )
  })

  it('meets a target on the raw value, not on the rounded one', async () => {
    const u = await load('scripts/bench/util.mjs')
    const f = u.figure({
      name: 'x',
      unit: 'ms',
      samples: [1000.04],
      target: { stat: 'p50', max: 1000 },
    })
    expect(f.p50).toBe(1000)
    expect(f.pass).toBe(false)
  })

  it('records the commit a run measured and whether the code differed from it', async () => {
    const r = await load('scripts/bench/util.mjs')
    const s = r.source(ROOT)
    expect(s.commit).toMatch(/^[0-9a-f]{40}$/)
    expect(typeof s.dirty).toBe('boolean')
  })
})
