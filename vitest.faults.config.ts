import { defineConfig } from 'vitest/config'

// npm run test:faults: every fault test, the slow ones (test/faults/slow) included
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 1,
  },
})
