// The demo's terminal output: numbered steps with timings, and small tables. The demo and
// the CLI are the only parts that write to the terminal directly; the arbiters log to a file.

export interface Out {
  line(text: string): void
  error(text: string): void
}

export const terminal: Out = {
  line: (text) => process.stdout.write(`${text}\n`),
  error: (text) => process.stderr.write(`${text}\n`),
}

let counter = 0

/** Run one step, printing what it does, then ✓ with its duration (or ✗ and the error). */
export async function step<T>(out: Out, what: string, fn: () => Promise<T>): Promise<T> {
  counter++
  const started = Date.now()
  out.line(`${String(counter).padStart(2)}. ${what}`)
  try {
    const v = await fn()
    out.line(`    ✓ ${((Date.now() - started) / 1000).toFixed(2)} s`)
    return v
  } catch (err) {
    out.line(
      `    ✗ after ${((Date.now() - started) / 1000).toFixed(2)} s: ${(err as Error).message}`,
    )
    throw err
  }
}

export function table(out: Out, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd()
  out.line(`    ${fmt(header)}`)
  out.line(`    ${widths.map((w) => '-'.repeat(w)).join('  ')}`)
  for (const r of rows) out.line(`    ${fmt(r)}`)
}
