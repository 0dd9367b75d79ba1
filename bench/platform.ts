import { randomBytes } from "node:crypto";
import { GATEWAY_NODE_FLAGS, runnerArgs } from "../bin/runner-args";
import { api, deleteStreams, freePort, NATS_URL, platformEnv, REDIS_URL } from "./common";
import { atCleanup, spawnChild, stopChildren, tempDir, waitHttp, type Child } from "./procs";
import { ROOT } from "./report";

/**
 * The platform as the benches run it, from the compiled dist/ (build first): embedded (one
 * process, as `npm start`) or a node per service over the real NATS (JetStream channels) and
 * Redis (cacher, rate-limit counters), as `npm run cluster`. Each start has its own
 * NAMESPACE (and cache prefix), data dir and ports; all of it goes at the end.
 *
 * Writes are durable (STORE_SYNC=true, the default); the rate limit is on but high enough
 * never to refuse, so every request pays for it.
 */

export interface PlatformNode {
  service: string;
  child: Child;
  /** Its /health/ready port (HEALTH_PORT). */
  healthPort: number;
  /** ms from spawn to its /health/ready answering 200, when started `sequential`. */
  readyMs?: number;
}

export interface Platform {
  base: string;
  namespace: string;
  nodes: PlatformNode[];
  stop(): Promise<void>;
}

export interface PlatformOptions {
  mode: "embedded" | "nats";
  /** What runs; embedded with none: every service, as `npm start`. */
  services: string[];
  env?: Record<string, string>;
  /** Env of one service's node only, by service. */
  nodeEnv?: Record<string, Record<string, string>>;
  /** Start each node once the one before is ready, timing each (bench/startup.ts). */
  sequential?: boolean;
}

export async function startPlatform(opts: PlatformOptions): Promise<Platform> {
  const port = await freePort();
  const namespace = `bench-${randomBytes(3).toString("hex")}`;
  const dataDir = tempDir("data");
  // Registry names: "catalog.v2" registers as catalog (version 2), as in bin/cluster.ts.
  const others = [...new Set(opts.services.filter(s => s !== "api").map(s => s.split(".")[0]))];
  const shared = platformEnv(ROOT, port, dataDir, {
    STORE_SYNC: "true",
    RATE_LIMIT_MAX: "1000000000",
    READY_SERVICES: others.join(","),
    ...opts.env,
  });
  const plans =
    opts.mode === "embedded"
      ? [
          {
            service: opts.services.join(",") || "all",
            SERVICES: opts.services.join(","),
            // `npm start` as it comes: memory cacher, in-memory channels.
            REDIS_URL: "",
            CHANNELS_URL: "",
          },
        ]
      : opts.services.map(s => ({
          service: s,
          SERVICES: s,
          TRANSPORTER: NATS_URL,
          CHANNELS_URL: NATS_URL,
          REDIS_URL,
          NAMESPACE: namespace,
          CACHE_PREFIX: namespace,
          NODE_ID: `${s}-${namespace}`,
        }));
  if (opts.mode === "nats") atCleanup(() => deleteStreams(namespace));
  const nodes: PlatformNode[] = [];
  for (const { service, ...env } of plans) {
    const healthPort = await freePort();
    // e.g. BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles every node.
    const nodeArgs = [
      // A gateway on its own node runs as deployed (bin/runner-args.ts).
      ...(opts.mode === "nats" && service === "api" ? GATEWAY_NODE_FLAGS : []),
      ...(process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean),
    ];
    const child = spawnChild(service, runnerArgs(ROOT, nodeArgs), {
      ...shared,
      ...env,
      HEALTH_PORT: String(healthPort),
      HEALTH_HOST: "127.0.0.1",
      ...opts.nodeEnv?.[service],
    });
    const node: PlatformNode = { service, child, healthPort };
    nodes.push(node);
    if (opts.sequential)
      node.readyMs = await waitHttp(
        `http://127.0.0.1:${healthPort}/health/ready`,
        [child],
        60_000,
        10,
      );
  }
  const children = nodes.map(n => n.child);
  const base = `http://127.0.0.1:${port}`;
  await waitHttp(`${base}/health/ready`, children, 90_000, 100);
  return { base, namespace, nodes, stop: () => stopChildren(children) };
}

export interface BenchUser {
  id: string;
  token: string;
}

export async function register(base: string, label: string): Promise<BenchUser> {
  const res = await api<{ user: { id: string }; token: string }>(
    base,
    "POST",
    "/api/auth/register",
    {
      email: `${label}-${randomBytes(4).toString("hex")}@example.com`,
      password: "bench password",
      displayName: label,
    },
  );
  if (res.status !== 201) throw new Error(`register: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.user.id, token: res.body.token };
}

/** A token of `creator` with a huge supply; resolves with its id. */
export async function createToken(base: string, creator: BenchUser): Promise<string> {
  const symbol = `B${randomBytes(4).toString("hex")}`.toUpperCase().slice(0, 11);
  const res = await api<{ id: string }>(
    base,
    "POST",
    "/api/tokens",
    { name: "Bench", symbol, decimals: 0, initialSupply: String(10n ** 30n) },
    creator.token,
  );
  if (res.status !== 201)
    throw new Error(`create token: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id;
}

export async function transfer(
  base: string,
  tokenId: string,
  from: BenchUser,
  to: string,
  amount: string,
): Promise<void> {
  const res = await api(
    base,
    "POST",
    `/api/tokens/${tokenId}/transfers`,
    { to, amount },
    from.token,
  );
  if (res.status !== 201) throw new Error(`transfer: ${res.status} ${JSON.stringify(res.body)}`);
}

/** The catalog's count of a token's transfers (GET /api/tokens/:id), -1 when unknown. */
export async function shownTransfers(base: string, tokenId: string): Promise<number> {
  const res = await api<{ stats?: { transfers: number } }>(
    base,
    "GET",
    `/api/tokens/${tokenId}`,
  ).catch(() => undefined);
  return res?.body?.stats?.transfers ?? -1;
}

/** Waits until the catalog counts at least `n` transfers of `tokenId`. */
export async function waitTransfersShown(
  base: string,
  tokenId: string,
  n: number,
  timeoutMs = 30_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while ((await shownTransfers(base, tokenId)) < n) {
    if (Date.now() > until) throw new Error(`catalog never showed ${n} transfers of ${tokenId}`);
    await new Promise(r => setTimeout(r, 50));
  }
}
