import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { runnerArgs } from "../bin/runner-args";
import { api, freePort, percentile, platformEnv } from "./common";
import { cpuLine, cpuMeter } from "./cpu";
import {
  createToken,
  register,
  shownTransfers,
  startPlatform,
  transfer,
  type BenchUser,
} from "./platform";
import {
  FUNDING,
  loadPg,
  PG_APP,
  PG_POOL,
  PG_SCHEMA,
  PG_TOKEN,
  pgAccessToken,
  pgAccounts,
  pickDatabase,
  SUPPLY,
} from "./pg-anchor";
import { cleanup, spawnChild, waitHttp, waitLine } from "./procs";
import { report, type Row } from "./report";

/**
 * Transfers per second through the gateway, embedded mode (one process, no
 * transporter): the platform (api, users, tokens) runs as a child process, as
 * `npm run serve` would, and this process is the clients: CLIENTS concurrent HTTP
 * clients posting transfers for BENCH_SECONDS (at most BENCH_TRANSFERS transfers).
 * With BENCH_MODES=embedded,nats also over NATS: api, users, tokens, catalog and
 * analytics each a node of its own, JetStream channels and Redis (bench/platform.ts).
 * BENCH_MODES=embedded,postgres (`npm run bench -- transfers-pg`) runs anchor l beside it:
 * the same clients against the same route on Fastify + PostgreSQL (bench/pg-anchor.ts).
 *
 * Goals (issue 15), durable writes on: embedded ≥ 4,000/s with p99 < 40 ms at 50 clients;
 * over NATS ≥ 3,000/s.
 *
 * env: BENCH_CLIENTS (50), BENCH_SECONDS (10), BENCH_TRANSFERS (200000),
 * BENCH_MODES (embedded; also nats, postgres), BENCH_DATA_DIR (a fresh temp dir with SQLite files; ":memory:"
 * for SQLite in memory; embedded only), BENCH_IDEMPOTENCY=1 to send an Idempotency-Key on
 * every transfer.
 */

const ROOT = path.resolve(__dirname, "../..");
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const MAX_TRANSFERS = Number(process.env.BENCH_TRANSFERS ?? 200_000);
const WITH_KEYS = process.env.BENCH_IDEMPOTENCY === "1";
const MODES = (process.env.BENCH_MODES ?? "embedded").split(",").map(s => s.trim());
const NATS_SERVICES = ["users", "tokens", "catalog", "analytics", "api"];

/** The platform over NATS, a node per service; its gateway's URL and its stop. */
interface Started {
  base: string;
  /** The platform's processes, for the CPU each uses. */
  procs: Array<{ name: string; pid: number }>;
  stop: () => Promise<void>;
}

/** The platform over NATS, a node per service; its gateway's URL and its stop. */
async function startCluster(): Promise<Started> {
  const p = await startPlatform({ mode: "nats", services: NATS_SERVICES });
  return {
    base: p.base,
    procs: p.nodes.map(n => ({ name: n.service, pid: n.child.pid })),
    stop: p.stop,
  };
}

/** The platform embedded (the original bench); its gateway's URL and its stop. */
async function startEmbedded(): Promise<Started & { dataDir: string }> {
  const port = await freePort();
  const dataDir =
    process.env.BENCH_DATA_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-bench-"));
  const base = `http://127.0.0.1:${port}`;
  const server = spawnChild(
    "platform",
    // e.g. BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the platform
    runnerArgs(ROOT, (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean)),
    platformEnv(ROOT, port, dataDir, {
      // The whole platform as `npm start` runs it (catalog and analytics consume the
      // events in the same process); BENCH_SERVICES=api,users,tokens measures the ledger alone.
      SERVICES: process.env.BENCH_SERVICES ?? "",
      READY_SERVICES: process.env.BENCH_SERVICES ? "users,tokens" : "",
    }),
  );
  const stop = async () => {
    await server.stop();
    if (!process.env.BENCH_DATA_DIR) fs.rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await waitHttp(`${base}/health/ready`, [server], 30_000, 200);
  } catch (err) {
    await stop();
    throw err;
  }
  return { base, dataDir, procs: [{ name: "platform", pid: server.pid }], stop };
}

/** What the clients measured (drive). */
interface Driven {
  /** Sorted, ms. */
  latencies: number[];
  statuses: Map<number, number>;
  elapsed: number;
  ok: number;
  cpuUse: ReturnType<ReturnType<typeof cpuMeter>["stop"]>;
}

/**
 * The load of this case, the same for the platform and anchor l: each client posts as its
 * own sender, 1 at a time to the others in a rotation they share, until SECONDS or
 * MAX_TRANSFERS.
 */
async function drive(
  base: string,
  tokenId: string,
  users: BenchUser[],
  procs: Array<{ name: string; pid: number }>,
): Promise<Driven> {
  // node:http with keep-alive: far cheaper per request than fetch, so the clients
  // take less of the CPU the platform needs.
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const post = (url: string, body: string, headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        `${base}${url}`,
        {
          method: "POST",
          agent,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            ...headers,
          },
        },
        res => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let started = 0;
  let seq = 0;
  const cpu = cpuMeter(procs);
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  const client = async (i: number) => {
    const me = users[i];
    while (performance.now() < deadline && started < MAX_TRANSFERS) {
      started++;
      const to = users[(i + 1 + (seq++ % (CLIENTS - 1 || 1))) % CLIENTS];
      const t = performance.now();
      const status = await post(
        `/api/tokens/${tokenId}/transfers`,
        JSON.stringify({ to: to.id, amount: "1" }),
        {
          authorization: `Bearer ${me.token}`,
          ...(WITH_KEYS ? { "idempotency-key": `b-${i}-${seq}` } : {}),
        },
      );
      latencies.push(performance.now() - t);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  await Promise.all(users.map((_, i) => client(i)));
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  const ok = statuses.get(201) ?? 0;
  const cpuUse = cpu.stop(ok);

  latencies.sort((a, b) => a - b);
  return { latencies, statuses, elapsed, ok, cpuUse };
}

/** The figures every mode prints; what they add to its row's notes. */
function printRun(run: Driven, supplyHolds: boolean, notes: string[]): void {
  const { latencies, statuses, elapsed, ok, cpuUse } = run;
  console.log(`clients: ${CLIENTS}, idempotency keys: ${WITH_KEYS ? "yes" : "no"}`);
  console.log(`transfers: ${ok} ok of ${latencies.length} in ${elapsed.toFixed(2)} s`);
  console.log(`statuses: ${[...statuses].map(([s, n]) => `${s}=${n}`).join(" ")}`);
  console.log(`transfers/s: ${(ok / elapsed).toFixed(0)}`);
  console.log(`latency p50: ${percentile(latencies, 0.5).toFixed(2)} ms`);
  console.log(`latency p99: ${percentile(latencies, 0.99).toFixed(2)} ms`);
  console.log(`supply == sum of balances: ${supplyHolds}`);
  if (cpuUse) {
    console.log(cpuLine(cpuUse, "transfer"));
    notes.push(
      `${cpuUse.totalMs.toFixed(2)} CPU ms per transfer (${cpuUse.shares[0].name} ${cpuUse.shares[0].msPerOp.toFixed(2)})`,
    );
  }
  if (!supplyHolds) notes.push("supply != sum of balances");
  const failed = latencies.length - ok;
  if (failed > 0) notes.push(`${failed} transfers not 201`);
}

/** A run as a row of the table. */
function rowOf(name: string, run: Driven, notes: string[]): Row {
  return {
    bench: "transfers",
    case: name,
    value: run.ok / run.elapsed,
    unit: "ops/s",
    p50: percentile(run.latencies, 0.5),
    p99: percentile(run.latencies, 0.99),
    ...(notes.length ? { note: notes.join("; ") } : {}),
  };
}

/** One mode's run: setup, CLIENTS clients for SECONDS, checks; its row of the table. */
async function bench(mode: string): Promise<Row> {
  console.log(`-- transfers ${mode === "nats" ? "over NATS (a node per service)" : "embedded"}`);
  const { base, stop, procs, ...rest } =
    mode === "nats" ? await startCluster() : await startEmbedded();
  const dataDir = "dataDir" in rest ? rest.dataDir : "per-node temp dirs";
  const notes: string[] = [];
  try {
    // One account per client plus the creator, who funds them.
    const creator = await register(base, "bench-creator");
    const users: BenchUser[] = [];
    for (let i = 0; i < CLIENTS; i++) users.push(await register(base, `bench-${i}`));
    const tokenId = await createToken(base, creator);
    for (const u of users) await transfer(base, tokenId, creator, u.id, String(FUNDING));

    const run = await drive(base, tokenId, users, procs);
    const holders = await api<{ rows: Array<{ amount: string }>; total: number }>(
      base,
      "GET",
      `/api/tokens/${tokenId}/holders?limit=100`,
    );
    const sum = holders.body.rows.reduce((s, r) => s + BigInt(r.amount), 0n);

    console.log(
      `data: ${dataDir === ":memory:" ? "SQLite in memory" : `SQLite files in ${dataDir}`}`,
    );
    printRun(run, sum === SUPPLY, notes);

    // The read model: how long until GET /api/tokens/:id counts every transfer (the
    // funding ones too), at most BENCH_CATCHUP_SECONDS. Only when catalog runs here.
    if (
      mode === "nats" ||
      !process.env.BENCH_SERVICES ||
      process.env.BENCH_SERVICES.includes("catalog")
    ) {
      const expected = run.ok + users.length;
      const catchUpMs = Number(process.env.BENCH_CATCHUP_SECONDS ?? 60) * 1000;
      const c0 = performance.now();
      let shown = -1;
      while (shown !== expected && performance.now() - c0 < catchUpMs) {
        shown = await shownTransfers(base, tokenId);
        if (shown !== expected) await new Promise(r => setTimeout(r, 100));
      }
      const waited = ((performance.now() - c0) / 1000).toFixed(2);
      console.log(
        shown === expected
          ? `catalog caught up: stats.transfers == ${expected} after ${waited} s`
          : `catalog NOT caught up after ${waited} s: stats.transfers ${shown} of ${expected}`,
      );
      if (shown !== expected) notes.push(`catalog not caught up after ${waited} s`);
    }
    const r = rowOf(`h transfers ${mode === "nats" ? "over NATS" : "embedded"}`, run, notes);
    return {
      ...r,
      ...(mode === "nats"
        ? { goal: "≥ 3,000/s", met: r.value >= 3000 }
        : { goal: "≥ 4,000/s, p99 < 40 ms", met: r.value >= 4000 && (r.p99 ?? 0) < 40 }),
    };
  } finally {
    await stop();
  }
}

const PG_CASE = "l transfers, Fastify + PostgreSQL";

/**
 * Anchor l (bench/pg-anchor.ts): the same clients and load against the transfer route on
 * Fastify + pg, a transaction per transfer; skipped, with a row saying why, when pg is not
 * installed or no PostgreSQL answers at BENCH_PG_URL.
 */
async function pgBench(): Promise<Row> {
  console.log("-- transfers on anchor l: Fastify + PostgreSQL, a transaction per transfer");
  const picked = await pickDatabase();
  if ("skip" in picked) {
    console.log(`anchor l skipped: ${picked.skip}`);
    return {
      bench: "transfers",
      case: PG_CASE,
      value: NaN,
      unit: "ops/s",
      note: `skipped: ${picked.skip}`,
    };
  }
  const pg = (await loadPg())!;
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const secret = process.env.JWT_SECRET ?? "bench-secret";
  const server = spawnChild(
    "pg-anchor",
    [path.join(__dirname, "anchor-server.js"), "pg-transfers"],
    {
      ...process.env,
      PORT: String(port),
      JWT_SECRET: secret,
      BENCH_PG_DATABASE_URL: picked.url,
      BENCH_PG_SENDERS: String(CLIENTS),
    },
  );
  const db = new pg.Client({
    connectionString: picked.url,
    options: `-c search_path=${PG_SCHEMA}`,
  });
  const notes: string[] = [];
  try {
    await db.connect();
    await waitLine(server, /READY/, 60_000);
    const settings = await db.query<{ name: string; setting: string }>(
      "SELECT name, setting FROM pg_settings WHERE name = ANY($1) ORDER BY name",
      [["fsync", "synchronous_commit", "wal_sync_method", "server_version"]],
    );
    const setting = Object.fromEntries(settings.rows.map(r => [r.name, r.setting]));
    console.log(
      `data: PostgreSQL ${setting.server_version}, ${new URL(picked.url).pathname.slice(1)}.${PG_SCHEMA}, ` +
        `${PG_POOL} connections, fsync ${setting.fsync}, wal_sync_method ${setting.wal_sync_method}, ` +
        "synchronous_commit on (per connection)",
    );
    if (setting.fsync !== "on")
      notes.push("the server runs with fsync off: commits are not durable");
    // The server and the PostgreSQL processes that work for it: its backends, the WAL writer.
    const backends = await db.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE application_name = $1 OR backend_type = 'walwriter'",
      [PG_APP],
    );
    const procs = [
      { name: "anchor l", pid: server.pid },
      ...backends.rows.map(r => ({ name: "postgres", pid: r.pid })),
    ];
    const accounts = pgAccounts(CLIENTS);
    const creator = { id: accounts.creator, token: pgAccessToken(accounts.creator, secret) };
    const users = accounts.senders.map(id => ({ id, token: pgAccessToken(id, secret) }));
    // Funded through the route, as the platform's senders are.
    for (const u of users) await transfer(base, PG_TOKEN, creator, u.id, String(FUNDING));
    const run = await drive(base, PG_TOKEN, users, procs);
    const check = await db.query<{ sum: string; transfers: number; outbox: number }>(
      "SELECT (SELECT sum(amount)::text FROM balances) AS sum, " +
        "(SELECT count(*)::int FROM transfers) AS transfers, (SELECT count(*)::int FROM outbox) AS outbox",
    );
    const { sum, transfers, outbox } = check.rows[0];
    printRun(run, BigInt(sum) === SUPPLY, notes);
    const expected = run.ok + users.length;
    console.log(`rows: ${transfers} transfers, ${outbox} outbox (${expected} answered 201)`);
    if (transfers !== expected || outbox !== expected)
      notes.push(`${transfers} transfer rows and ${outbox} outbox rows for ${expected} 201s`);
    return rowOf(PG_CASE, run, notes);
  } finally {
    await server.stop();
    await db.query(`DROP SCHEMA IF EXISTS ${PG_SCHEMA} CASCADE`).catch(() => undefined);
    await db.end().catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const mode of MODES) rows.push(mode === "postgres" ? await pgBench() : await bench(mode));
  // The platform embedded beside anchor l, when both ran.
  const l = rows.find(r => r.case === PG_CASE && Number.isFinite(r.value));
  const h = rows.find(r => r.case === "h transfers embedded");
  if (l && h) Object.assign(h, { anchor: "l", ratio: h.value / l.value });
  report("transfers", rows);
}

main()
  .catch(err => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
