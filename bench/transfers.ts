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
import { cleanup, spawnChild, waitHttp } from "./procs";
import { report, type Row } from "./report";

/**
 * Transfers per second through the gateway, embedded mode (one process, no
 * transporter): the platform (api, users, tokens) runs as a child process, as
 * `npm run serve` would, and this process is the clients: CLIENTS concurrent HTTP
 * clients posting transfers for BENCH_SECONDS (at most BENCH_TRANSFERS transfers).
 * With BENCH_MODES=embedded,nats also over NATS: api, users, tokens, catalog and
 * analytics each a node of its own, JetStream channels and Redis (bench/platform.ts).
 *
 * Goals (issue 15), durable writes on: embedded ≥ 4,000/s with p99 < 40 ms at 50 clients;
 * over NATS ≥ 3,000/s.
 *
 * env: BENCH_CLIENTS (50), BENCH_SECONDS (10), BENCH_TRANSFERS (200000),
 * BENCH_MODES (embedded), BENCH_DATA_DIR (a fresh temp dir with NeDB files; ":memory:"
 * for NeDB in memory; embedded only), BENCH_IDEMPOTENCY=1 to send an Idempotency-Key on
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
    for (const u of users) await transfer(base, tokenId, creator, u.id, String(10n ** 20n));

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
    const holders = await api<{ rows: Array<{ amount: string }>; total: number }>(
      base,
      "GET",
      `/api/tokens/${tokenId}/holders?limit=100`,
    );
    const sum = holders.body.rows.reduce((s, r) => s + BigInt(r.amount), 0n);

    console.log(`data: ${dataDir === ":memory:" ? "NeDB in memory" : `NeDB files in ${dataDir}`}`);
    console.log(`clients: ${CLIENTS}, idempotency keys: ${WITH_KEYS ? "yes" : "no"}`);
    console.log(`transfers: ${ok} ok of ${latencies.length} in ${elapsed.toFixed(2)} s`);
    console.log(`statuses: ${[...statuses].map(([s, n]) => `${s}=${n}`).join(" ")}`);
    console.log(`transfers/s: ${(ok / elapsed).toFixed(0)}`);
    console.log(`latency p50: ${percentile(latencies, 0.5).toFixed(2)} ms`);
    console.log(`latency p99: ${percentile(latencies, 0.99).toFixed(2)} ms`);
    console.log(`supply == sum of balances: ${sum === 10n ** 30n}`);
    if (cpuUse) {
      console.log(cpuLine(cpuUse, "transfer"));
      notes.push(
        `${cpuUse.totalMs.toFixed(2)} CPU ms per transfer (${cpuUse.shares[0].name} ${cpuUse.shares[0].msPerOp.toFixed(2)})`,
      );
    }
    if (sum !== 10n ** 30n) notes.push("supply != sum of balances");
    const failed = latencies.length - ok;
    if (failed > 0) notes.push(`${failed} transfers not 201`);

    // The read model: how long until GET /api/tokens/:id counts every transfer (the
    // funding ones too), at most BENCH_CATCHUP_SECONDS. Only when catalog runs here.
    if (
      mode === "nats" ||
      !process.env.BENCH_SERVICES ||
      process.env.BENCH_SERVICES.includes("catalog")
    ) {
      const expected = ok + users.length;
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
    const rate = ok / elapsed;
    const p99 = percentile(latencies, 0.99);
    return {
      bench: "transfers",
      case: `h transfers ${mode === "nats" ? "over NATS" : "embedded"}`,
      value: rate,
      unit: "ops/s",
      p50: percentile(latencies, 0.5),
      p99,
      ...(mode === "nats"
        ? { goal: "≥ 3,000/s", met: rate >= 3000 }
        : { goal: "≥ 4,000/s, p99 < 40 ms", met: rate >= 4000 && p99 < 40 }),
      ...(notes.length ? { note: notes.join("; ") } : {}),
    };
  } finally {
    await stop();
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const mode of MODES) rows.push(await bench(mode));
  report("transfers", rows);
}

main()
  .catch(err => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
