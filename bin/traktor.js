#!/usr/bin/env -S node --max-semi-space-size=2
// The published entry point: the CLI bundled by `npm install` (through `prepare`: tsc, then
// scripts/bundle.mjs, which says why a bundle: ~12 MiB less RSS per arbiter).
// --max-semi-space-size=2: V8's young generation grows to 2 × 16 MiB by default and keeps it;
// an arbiter allocates little and often, and 2 MiB semi-spaces keep an idle arbiter ~25 MiB
// smaller (`npm run bench`, footprint rows). Run it with `node` yourself (a service unit) and
// pass the flag there too. The test and bench harnesses read this line.
import fs from 'node:fs'

// the compiled tree when it is newer than the bundle (tsc run alone, while developing)
const mtime = (file) =>
  fs.statSync(new URL(file, import.meta.url), { throwIfNoEntry: false })?.mtimeMs
const bundle = mtime('../dist/traktor.bundle.js')
await import(
  bundle !== undefined && bundle >= (mtime('../dist/main.js') ?? 0)
    ? '../dist/traktor.bundle.js'
    : '../dist/main.js'
)
