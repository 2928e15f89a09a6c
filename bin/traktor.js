#!/usr/bin/env node
// The published entry point: the compiled CLI (built by `npm install` through `prepare`).
import '../dist/main.js'
