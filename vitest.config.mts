import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Kernel and broker suites share namespaces, ports and nft tables: run files one at a time.
    fileParallelism: false,
  },
});
