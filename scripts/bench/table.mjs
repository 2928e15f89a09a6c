#!/usr/bin/env node
// Prints bench/results.json as the Markdown table used in bench/README.md:
//   node scripts/bench/table.mjs [results.json]
import fs from 'node:fs'
import path from 'node:path'

const file = process.argv[2] ?? path.resolve(import.meta.dirname, '../../bench/results.json')
const r = JSON.parse(fs.readFileSync(file, 'utf8'))
const m = r.machine
const cell = (v) => (v === undefined || v === null ? '' : String(v))
const stamp = (d) => `${d.slice(0, 16).replace('T', ' ')} UTC`
const when = (runs) =>
  runs.length === 1
    ? `Run ${stamp(runs[0].date)}, ${Math.round(runs[0].durationSeconds / 60)} min.`
    : `Figures from ${runs.length} runs, ${stamp(runs[0].date)} to ${stamp(runs.at(-1).date)} (\`runs\` in results.json).`
const met = (f) =>
  f.dnf ? '**did not converge**' : f.pass === null ? '' : f.pass ? 'yes' : '**no**'
const lines = [
  `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, ${m.os}, Node ${m.node}, PostgreSQL ${m.postgres}. ${when(r.runs ?? [])}`,
  '',
  '| figure | unit | p50 | p95 | p99 | n | target | met |',
  '|---|---|--:|--:|--:|--:|---|---|',
  ...r.figures.map(
    (f) =>
      `| ${f.name} | ${f.unit} | ${f.n === 0 ? '—' : cell(f.p50)} | ${f.n === 0 ? '—' : cell(f.p95)} | ${cell(f.p99)} | ${f.n} | ${f.target ?? '—'} | ${met(f)} |`,
  ),
]
process.stdout.write(`${lines.join('\n')}\n`)
