// Aligned text tables in the style of `patronictl list`: a border with an optional title,
// a header row, one row per item. Cells are cleaned of control characters, so text from the
// server (a PostgreSQL error message, an advertised address) cannot move the cursor or
// recolour the terminal.
export type Align = 'left' | 'right'

export interface TableInit {
  title?: string
  headers: readonly string[]
  rows: readonly (readonly string[])[]
  /** per column; default left */
  align?: readonly Align[]
}

// C0, DEL and C1 (CSI is \x9b): anything a terminal might act on
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]+/g

export function cleanCell(text: string): string {
  return text.replace(CONTROL, ' ').trim()
}

/** Width in terminal columns, counting code points (the tables hold no wide characters). */
function width(s: string): number {
  return [...s].length
}

export function renderTable(t: TableInit): string {
  const headers = t.headers.map(cleanCell)
  const rows = t.rows.map((r) => headers.map((_, i) => cleanCell(r[i] ?? '')))
  const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))))
  const rule = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`
  const line = (cells: readonly string[], align: readonly Align[]) =>
    `| ${cells
      .map((c, i) => {
        const pad = ' '.repeat((widths[i] ?? 0) - width(c))
        return align[i] === 'right' ? pad + c : c + pad
      })
      .join(' | ')} |`
  return [
    titled(rule, t.title === undefined ? undefined : cleanCell(t.title)),
    line(headers, []),
    rule,
    ...rows.map((r) => line(r, t.align ?? [])),
    rule,
  ].join('\n')
}

/** "+ Cluster: x ----+---+" : the title written over the start of the top rule. */
function titled(rule: string, title: string | undefined): string {
  if (!title) return rule
  const head = `+ ${title} `
  const chars = [...rule]
  return width(head) < chars.length ? head + chars.slice(width(head)).join('') : `${head}+`
}
