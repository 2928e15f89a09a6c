// The node flags on the entry point's `#!/usr/bin/env -S node ...` line: the test and bench
// harnesses start arbiters with them, as `npx traktor start` runs.
import fs from 'node:fs'

/** @param {string} bin @returns {string[]} */
export function shebangFlags(bin) {
  const first = fs.readFileSync(bin, 'utf8').split('\n', 1)[0] ?? ''
  return (
    first
      .match(/^#!.*\bnode((?: --?[\w-]+(?:=\S+)?)*)\s*$/)?.[1]
      ?.split(' ')
      .filter(Boolean) ?? []
  )
}
