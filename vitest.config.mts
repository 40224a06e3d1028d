import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'common/**/*.test.ts', 'proxy/**/*.test.ts', 'xds-client/**/*.test.ts', 'certs/**/*.test.ts', 'control-plane/**/*.test.ts'],
    // Integration tests bind real sockets; keep parallelism modest for 2-core machines.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    // Quiet component logs in test output (tests that check logs set their own level).
    env: { MESHLET_LOG_LEVEL: process.env.MESHLET_LOG_LEVEL ?? 'warn' },
    hookTimeout: 30_000,
  },
});
