import os from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

// The integration project also runs as the unprivileged test user, who cannot write the
// checkout: keep vitest's cache in a per-user temporary directory.
export default defineConfig({
  cacheDir: path.join(os.tmpdir(), `burrow-vitest-${process.getuid?.() ?? 'x'}`),
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // As root: fails a file after which the host's mount table changed (mount-guard.ts).
          setupFiles: ['test/integration/mount-guard.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Integration tests change host state (device modes, users); run files one at a time.
          fileParallelism: false,
        },
      },
      {
        extends: true,
        test: {
          // test/vm: cgroup v2 enforcement in a qemu guest (each describe block boots one VM).
          name: 'vm',
          include: ['test/vm/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
