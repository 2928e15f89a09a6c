import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/faults/slow: by hand (npm run test:faults), too slow for CI
    exclude: ['test/faults/slow/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 90_000,
    pool: 'forks',
    maxWorkers: 2,
    // .ci/run reads the counts from this file; the default reporter is for people
    reporters: ['default', ['json', { outputFile: '.tmp/vitest-results.json' }]],
  },
})
