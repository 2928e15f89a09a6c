#!/usr/bin/env node
// bench/results.json as the Markdown table the READMEs show:
//   node scripts/bench/table.mjs [results.json]   print it
//   node scripts/bench/table.mjs --write          put it between the bench:table markers of
//                                                 README.md and bench/README.md
// The READMEs' tables are only ever written this way, so they cannot drift from the results
// (test/unit/bench-table.test.ts checks that they match).
import fs from 'node:fs'
import path from 'node:path'

const ROOT = path.resolve(import.meta.dirname, '../..')
export const RESULTS = path.join(ROOT, 'bench', 'results.json')
export const READMES = [path.join(ROOT, 'README.md'), path.join(ROOT, 'bench', 'README.md')]
export const BEGIN = '<!-- bench:table (node scripts/bench/table.mjs --write) -->'
export const END = '<!-- /bench:table -->'

const cell = (v) => (v === undefined || v === null ? '' : String(v))
const stamp = (d) => `${d.slice(0, 16).replace('T', ' ')} UTC`
const short = (c) => (c && c !== 'unknown' ? c.slice(0, 7) : 'unknown')

function when(runs) {
  if (runs.length === 0) return ''
  const last = runs.at(-1)
  const code = last.commit
    ? `code ${short(last.commit)}${last.dirty ? ' with uncommitted changes' : ''}`
    : 'code not recorded (runs before the results carried their commit)'
  return runs.length === 1
    ? `Run ${stamp(last.date)}, ${Math.round(last.durationSeconds / 60)} min, ${code}.`
    : `Figures from ${runs.length} runs, ${stamp(runs[0].date)} to ${stamp(last.date)}; the last on ${code} (\`runs\` in results.json; a figure's \`commit\` says which code it measured, \`history\` its earlier runs).`
}

const met = (f) =>
  f.dnf ? '**did not converge**' : f.pass === null ? '' : f.pass ? 'yes' : '**no**'
// a statistic that fell on a miss (e.g. a killed node never seen dead) is shown as such
const stat = (f, k) => (f.n === 0 ? '—' : f[k] === null && f.misses ? 'miss' : cell(f[k]))
const n = (f) => (f.misses ? `${f.n} (${f.misses} missed)` : String(f.n))

/** The Markdown for one results object. */
export function markdown(r) {
  const m = r.machine
  return [
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, ${m.os}, Node ${m.node}, PostgreSQL ${m.postgres}. ${when(r.runs ?? [])}`,
    '',
    '| figure | unit | p50 | p95 | p99 | n | target | met |',
    '|---|---|--:|--:|--:|--:|---|---|',
    ...r.figures.map(
      (f) =>
        `| ${f.name} | ${f.unit} | ${stat(f, 'p50')} | ${stat(f, 'p95')} | ${f.p99 === undefined ? '' : stat(f, 'p99')} | ${n(f)} | ${f.target ?? '—'} | ${met(f)} |`,
    ),
  ].join('\n')
}

/** `text` with the block between the markers replaced by `table`; throws without markers. */
export function replaceBlock(text, table, file = 'the file') {
  const a = text.indexOf(BEGIN)
  const b = text.indexOf(END)
  if (a < 0 || b < a) throw new Error(`${file} has no ${BEGIN} … ${END} block`)
  return `${text.slice(0, a + BEGIN.length)}\n${table}\n\n${text.slice(b)}`
}

/** The block between the markers, as written there. */
export function currentBlock(text) {
  const a = text.indexOf(BEGIN)
  const b = text.indexOf(END)
  return a < 0 || b < a ? undefined : text.slice(a + BEGIN.length, b).trim()
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2)
  const write = args.includes('--write')
  const file = args.find((a) => !a.startsWith('--')) ?? RESULTS
  const table = markdown(JSON.parse(fs.readFileSync(file, 'utf8')))
  if (!write) process.stdout.write(`${table}\n`)
  else
    for (const readme of READMES) {
      fs.writeFileSync(readme, replaceBlock(fs.readFileSync(readme, 'utf8'), table, readme))
      process.stdout.write(`wrote the table into ${path.relative(process.cwd(), readme)}\n`)
    }
}
