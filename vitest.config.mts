import fs from "node:fs";
import path from "node:path";
import { defineConfig } from "vitest/config";

/** The nodes' flags, written once in package.json `config.node_flags` (bin/runner-args.ts). */
const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, "package.json"), "utf8")) as {
  config: { node_flags: string };
};
const execArgv = pkg.config.node_flags.split(/\s+/).filter(Boolean);

/**
 * Three tiers (docs/architecture.md): unit (pure lib code), integration (one in-process
 * broker behind the real gateway, driven over HTTP), cluster (real processes over the real
 * NATS and Redis; run one file at a time so timings stay honest on two cores). The cluster
 * tier's globalSetup probes NATS and Redis and skips the tier, in one line, when one is silent.
 */
const env = {
  NODE_ENV: "test",
  DATA_DIR: ":memory:",
  LOG_LEVEL: "warn",
  JWT_SECRET: "test-secret",
};

export default defineConfig({
  test: {
    execArgv,
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"], env } },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          env,
          testTimeout: 20_000,
          hookTimeout: 20_000,
        },
      },
      {
        test: {
          name: "cluster",
          include: ["test/cluster/**/*.test.ts"],
          globalSetup: ["test/helpers/cluster.ts"],
          env,
          testTimeout: 120_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
