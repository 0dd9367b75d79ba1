import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { runnerArgs } from "../bin/runner-args";
import { api, freePort, percentile, platformEnv, waitReady } from "./common";

/**
 * Transfers per second through the gateway, embedded mode (one process, no
 * transporter): the platform (api, users, tokens) runs as a child process, as
 * `npm run serve` would, and this process is the clients: CLIENTS concurrent HTTP
 * clients posting transfers for BENCH_SECONDS (at most BENCH_TRANSFERS transfers).
 *
 * env: BENCH_CLIENTS (50), BENCH_SECONDS (10), BENCH_TRANSFERS (200000),
 * BENCH_DATA_DIR (a fresh temp dir with NeDB files; ":memory:" for NeDB in memory),
 * BENCH_IDEMPOTENCY=1 to send an Idempotency-Key on every transfer.
 */

const ROOT = path.resolve(__dirname, "../..");
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const MAX_TRANSFERS = Number(process.env.BENCH_TRANSFERS ?? 200_000);
const WITH_KEYS = process.env.BENCH_IDEMPOTENCY === "1";

async function main(): Promise<void> {
  const port = await freePort();
  const dataDir =
    process.env.BENCH_DATA_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-bench-"));
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(
    process.execPath,
    // e.g. BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the platform
    runnerArgs(ROOT, (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean)),
    {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
      env: platformEnv(ROOT, port, dataDir, {
        // The whole platform as `npm start` runs it (catalog and analytics consume the
        // events in the same process); BENCH_SERVICES=api,users,tokens measures the ledger alone.
        SERVICES: process.env.BENCH_SERVICES ?? "",
        READY_SERVICES: process.env.BENCH_SERVICES ? "users,tokens" : "",
      }),
    },
  );
  const exited = new Promise(resolve => server.once("exit", resolve));
  const stop = () => server.exitCode === null && server.kill("SIGTERM");
  process.on("exit", stop);

  try {
    await waitReady(base, () => server.exitCode !== null, 30_000);

    // One account per client plus the creator, who funds them.
    const register = async (i: number) => {
      const res = await api<{ user: { id: string }; token: string }>(
        base,
        "POST",
        "/api/auth/register",
        {
          email: `bench-${process.pid}-${i}@example.com`,
          password: "bench password",
          displayName: `bench ${i}`,
        },
      );
      if (res.status !== 201) throw new Error(`register: ${res.status}`);
      return { id: res.body.user.id, token: res.body.token };
    };
    const creator = await register(-1);
    const users: Array<{ id: string; token: string }> = [];
    for (let i = 0; i < CLIENTS; i++) users.push(await register(i));
    const symbol = `B${Date.now().toString(36).toUpperCase()}`.slice(0, 11);
    const token = await api<{ id: string }>(
      base,
      "POST",
      "/api/tokens",
      { name: "Bench", symbol, decimals: 0, initialSupply: String(10n ** 30n) },
      creator.token,
    );
    if (token.status !== 201) throw new Error(`create token: ${token.status}`);
    const tokenId = token.body.id;
    for (const u of users) {
      const res = await api(
        base,
        "POST",
        `/api/tokens/${tokenId}/transfers`,
        { to: u.id, amount: String(10n ** 20n) },
        creator.token,
      );
      if (res.status !== 201) throw new Error(`fund: ${res.status}`);
    }

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

    // The read model: how long until GET /api/tokens/:id counts every transfer (the
    // funding ones too), at most BENCH_CATCHUP_SECONDS. Only when catalog runs here.
    if (!process.env.BENCH_SERVICES || process.env.BENCH_SERVICES.includes("catalog")) {
      const expected = ok + users.length;
      const catchUpMs = Number(process.env.BENCH_CATCHUP_SECONDS ?? 60) * 1000;
      const c0 = performance.now();
      let shown = -1;
      while (shown !== expected && performance.now() - c0 < catchUpMs) {
        const res = await api<{ stats?: { transfers: number } }>(
          base,
          "GET",
          `/api/tokens/${tokenId}`,
        ).catch(() => undefined);
        shown = res?.body?.stats?.transfers ?? -1;
        if (shown !== expected) await new Promise(r => setTimeout(r, 100));
      }
      const waited = ((performance.now() - c0) / 1000).toFixed(2);
      console.log(
        shown === expected
          ? `catalog caught up: stats.transfers == ${expected} after ${waited} s`
          : `catalog NOT caught up after ${waited} s: stats.transfers ${shown} of ${expected}`,
      );
    }
  } finally {
    stop();
    await exited;
    if (!process.env.BENCH_DATA_DIR) fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
