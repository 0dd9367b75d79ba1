import net from "node:net";
import path from "node:path";

/** What every benchmark needs: a free port, a JSON call to the gateway, percentiles. */

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** One HTTP call with a JSON body (and a bearer token); the status and the parsed answer. */
export async function api<T>(
  base: string,
  method: string,
  url: string,
  body?: unknown,
  token?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T }> {
  const res = await fetch(base + url, {
    method,
    headers: {
      "content-type": "application/json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** The p-th quantile (0–1) of ascending `sorted`. */
export const percentile = (sorted: number[], p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

/**
 * A closed loop: `loops` callers, each calling again as soon as its call ends, for
 * `seconds`. Every call's time (ms, sorted), the seconds taken, and how many calls
 * answered false or threw.
 */
export async function closedLoop(
  loops: number,
  seconds: number,
  call: () => Promise<boolean>,
): Promise<{ times: number[]; elapsed: number; errors: number }> {
  const times: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (performance.now() < deadline) {
        const t = performance.now();
        const good = await call().catch(() => false);
        times.push(performance.now() - t);
        if (!good) errors++;
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  return { times, elapsed, errors };
}

/**
 * Resolves once the gateway at `base` answers /health/ready with 200; throws when
 * `dead()` says the platform's process exited, or after `timeoutMs`.
 */
export async function waitReady(
  base: string,
  dead: () => boolean,
  timeoutMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ready = await fetch(`${base}/health/ready`).then(
      r => r.status === 200,
      () => false,
    );
    if (ready) return;
    if (Date.now() > until || dead()) throw new Error("the platform did not start");
    await new Promise(r => setTimeout(r, 200));
  }
}

/**
 * The env of a platform a benchmark spawns from the build under `root`: its gateway on
 * `port` without rate limits, its data in `dataDir`, one process unless `extra` says
 * otherwise (`extra` also names the services).
 */
export function platformEnv(
  root: string,
  port: number,
  dataDir: string,
  extra: NodeJS.ProcessEnv,
): NodeJS.ProcessEnv {
  return {
    ...process.env,
    SERVICEDIR: path.join(root, "dist/services"),
    TRANSPORTER: "",
    PORT: String(port),
    HOST: "127.0.0.1",
    DATA_DIR: dataDir,
    RATE_LIMIT_MAX: "0",
    LOG_LEVEL: "warn",
    JWT_SECRET: process.env.JWT_SECRET ?? "bench-secret",
    ...extra,
  };
}

/**
 * The figures of flows that each end in an outcome: how many ended in each, and the rate
 * and latency (ms, sorted here) of those that ended in `done`; `flows` names them.
 */
export function printOutcomes(
  flows: string,
  done: string,
  outcomes: Map<string, number>,
  times: number[],
  elapsedSeconds: number,
): void {
  times.sort((a, b) => a - b);
  console.log(`outcomes: ${[...outcomes].map(([s, n]) => `${s}=${n}`).join(" ")}`);
  console.log(`${flows}/s (${done}): ${(times.length / elapsedSeconds).toFixed(1)}`);
  console.log(`time to ${done} p50: ${percentile(times, 0.5).toFixed(1)} ms`);
  console.log(`time to ${done} p99: ${percentile(times, 0.99).toFixed(1)} ms`);
}

/**
 * The JSON every anchor answers: a token document shaped and sized like the platform's
 * GET /api/tokens/:id (CatalogToken), so each server serializes and sends the same bytes.
 */
export function tokenDoc(id: string): Record<string, unknown> {
  return {
    id,
    name: "Bench Token",
    symbol: "BENCH",
    decimals: 18,
    totalSupply: "1000000000000000000000000000",
    creatorId: "usr_0123456789abcdef01234567",
    metadata: { description: "A token for benchmarks", website: "https://example.com" },
    createdAt: "2026-11-30T12:00:00.000Z",
    featured: false,
    stats: { holders: 51, transfers: 12345 },
  };
}

/** The NATS server the benches use (TRANSPORTER, else the local one). */
export const NATS_URL = process.env.TRANSPORTER || "nats://127.0.0.1:4222";
export const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";

/**
 * Deletes the JetStream streams of a bench's namespace (the channels adapter names them
 * `<namespace>_<channel>`), so a bench leaves nothing on the shared NATS server.
 */
export async function deleteStreams(namespace: string): Promise<void> {
  const { connect } = await import("nats");
  const nc = await connect({ servers: new URL(NATS_URL).host });
  try {
    const jsm = await nc.jetstreamManager();
    const names: string[] = [];
    for await (const info of jsm.streams.list())
      if (info.config.name.startsWith(`${namespace}_`)) names.push(info.config.name);
    for (const name of names) await jsm.streams.delete(name);
  } finally {
    await nc.close();
  }
}

/** A call that must answer `status`. */
export async function must<T>(
  status: number,
  call: Promise<{ status: number; body: T }>,
): Promise<T> {
  const res = await call;
  if (res.status !== status)
    throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Runs `fn` over `items` with at most `n` at once. */
export async function pooled<T>(
  items: T[],
  n: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}
