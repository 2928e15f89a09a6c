#!/usr/bin/env -S node --max-semi-space-size=2
// The published entry point: the compiled CLI (built by `npm install` through `prepare`).
// --max-semi-space-size=2: V8's young generation grows to 2 × 16 MiB by default and keeps it;
// an arbiter allocates little and often, and 2 MiB semi-spaces keep an idle arbiter near
// 100 MiB instead of ~126 (`npm run bench`, footprint rows). Run it with `node` yourself (a
// service unit) and pass the flag there too. The test and bench harnesses read this line.
import '../dist/main.js'
