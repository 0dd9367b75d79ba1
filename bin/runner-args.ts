import fs from "node:fs";
import net from "node:net";
import path from "node:path";

/** package.json's directory: above bin/ when run from the sources, above dist/bin/ when built. */
function projectRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, "package.json")) && path.dirname(dir) !== dir)
    dir = path.dirname(dir);
  return dir;
}

/**
 * The node flags are written once, in package.json's `config` (the npm scripts use them as
 * `$npm_package_config_node_flags`); vitest.config.mts and the code here read them there.
 */
function configuredFlags(key: "node_flags" | "gateway_node_flags"): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot(), "package.json"), "utf8")) as {
    config?: Record<string, string>;
  };
  const flags = pkg.config?.[key];
  if (!flags) throw new Error(`package.json has no config.${key}`);
  return flags.split(/\s+/).filter(Boolean);
}

/**
 * How every mintmesh node is started, as `npm run serve` does: moleculer-runner on the
 * compiled config. DEP0174 is moleculer-db's NeDB adapter (loaded, never used); the
 * ExperimentalWarning is node:sqlite's, our embedded store; async context frames make
 * AsyncLocalStorage (request ids in logs) cheap on Node 22; a 32 MB young generation halves
 * scavenges under load (about +10 % transfers/s) and fits the pods' memory limits.
 * Used by `npm run cluster`, `npm run dev`, the cluster tests and the benchmark; the npm
 * scripts, vitest and the Dockerfile's CMD give the same (package.json `config.node_flags`).
 */
export const NODE_FLAGS = configuredFlags("node_flags");

/**
 * Every service, in the order a cluster starts them: the gateway last, so its first
 * readiness check finds the others; sagas after the services a launch calls (it waits for
 * them before resuming sagas anyway). npm run cluster, the startup bench, the deploy tests.
 */
export const SERVICE_START_ORDER = [
  "users",
  "tokens",
  "catalog",
  "analytics",
  "nfts",
  "market",
  "activity",
  "dex",
  "marketing",
  "sagas",
  "webhooks",
  "api",
];

/**
 * A gateway node on its own (SERVICES=api, with Redis for its cacher and idempotency
 * records) keeps little: bounded caches of a few MB. Under load its heap kept a high-water
 * mark of 165–240 MB RSS; a small young generation and an old space of 96 MB hold it near
 * 116 MB at the same requests/s (docs/benchmarks.md). Not for one process with every
 * service: NeDB keeps its collections in that heap.
 */
export const GATEWAY_NODE_FLAGS = configuredFlags("gateway_node_flags");

/**
 * `node` arguments that run moleculer-runner on `config` (a path under `root`; default the
 * project's compiled moleculer.config.js). Runner flags such as `--hot --repl` go after them.
 */
export function runnerArgs(
  root: string,
  extraNodeFlags: string[] = [],
  config = "dist/moleculer.config.js",
): string[] {
  return [
    ...NODE_FLAGS,
    ...extraNodeFlags,
    path.join(root, "node_modules/moleculer/bin/moleculer-runner.js"),
    "--config",
    path.join(root, config),
  ];
}

/**
 * Whether something accepts TCP connections at a nats:// or redis:// URL: a clear message
 * up front beats every node failing to connect after its timeout.
 */
export function answers(url: string, timeoutMs = 1500): Promise<boolean> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === "redis:" ? 6379 : 4222));
  return new Promise(resolve => {
    const sock = net.connect({ host: u.hostname, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}
