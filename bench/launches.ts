import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { answers, runnerArgs } from "../bin/runner-args";
import { api, freePort, percentile, platformEnv, printOutcomes, waitReady } from "./common";
import { install } from "./procs";
import { report, type Row } from "./report";

/**
 * Token launches (the launch saga: create the token, fill its pool, activate its
 * marketing) through the gateway: launches per second, and p50/p99 of the time from
 * POST /api/launches to the saga `completed` (the POST's answer when it is a 201, else
 * the GET of its Location that first shows it completed). Twice:
 *
 *  - embedded: the platform in one process, no transporter, as `npm run serve` runs it;
 *  - over NATS: each service (api, users, tokens, dex, marketing, sagas) a process of its
 *    own on the real NATS server (TRANSPORTER), as `npm run cluster` runs them.
 *
 * CLIENTS concurrent HTTP clients launch for BENCH_SECONDS each time; NeDB files in a
 * fresh temp dir (synced, as in production on NeDB).
 *
 * Goals (set by issue 15's suite; the sagas issue set none): embedded ≥ 300 launches/s
 * with p99 < 100 ms to completed; over NATS ≥ 200/s with p99 < 150 ms; all completed.
 *
 * env: BENCH_CLIENTS (10), BENCH_SECONDS (10), BENCH_MODES (embedded,nats),
 * TRANSPORTER (nats://127.0.0.1:4222).
 */

const ROOT = path.resolve(__dirname, "../..");
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 10);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const MODES = (process.env.BENCH_MODES ?? "embedded,nats").split(",").map(s => s.trim());
const NATS = process.env.TRANSPORTER || "nats://127.0.0.1:4222";
const SERVICES = ["users", "tokens", "dex", "marketing", "sagas", "api"];
const FINAL = ["completed", "compensated", "failed"];
const GOALS: Record<string, { rate: number; p99: number }> = {
  embedded: { rate: 300, p99: 100 },
  nats: { rate: 200, p99: 150 },
};

interface Saga {
  id: string;
  state: string;
}

/** Starts the platform as `mode` says; resolves with its gateway's URL and a stop function. */
async function startPlatform(
  mode: string,
  dataDir: string,
): Promise<{ base: string; stop: () => Promise<void> }> {
  const port = await freePort();
  // Each plan below names its services and transporter.
  const shared = platformEnv(ROOT, port, dataDir, {
    READY_SERVICES: SERVICES.filter(s => s !== "api").join(","),
  });
  const namespace = `bench-${randomBytes(3).toString("hex")}`;
  const plans =
    mode === "embedded"
      ? [{ SERVICES: SERVICES.join(","), TRANSPORTER: "" }]
      : SERVICES.map(s => ({
          SERVICES: s,
          TRANSPORTER: NATS,
          NAMESPACE: namespace,
          NODE_ID: `${s}-${namespace}`,
        }));
  const children: ChildProcess[] = plans.map(env =>
    spawn(process.execPath, runnerArgs(ROOT), {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...shared, ...env },
    }),
  );
  const exited = children.map(c => new Promise(resolve => c.once("exit", resolve)));
  const stop = async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
    await Promise.all(exited);
  };
  process.on("exit", () => children.forEach(c => c.exitCode === null && c.kill("SIGKILL")));
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitReady(base, () => children.some(c => c.exitCode !== null), 60_000);
  } catch (err) {
    await stop();
    throw new Error(`${mode}: ${(err as Error).message}`);
  }
  return { base, stop };
}

async function bench(mode: string): Promise<Row> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-bench-launches-"));
  const { base, stop } = await startPlatform(mode, dataDir);
  try {
    const users: Array<{ id: string; token: string }> = [];
    for (let i = 0; i < CLIENTS; i++) {
      const res = await api<{ user: { id: string }; token: string }>(
        base,
        "POST",
        "/api/auth/register",
        {
          email: `launch-${process.pid}-${mode}-${i}@example.com`,
          password: "bench password",
          displayName: `bench ${i}`,
        },
      );
      if (res.status !== 201) throw new Error(`register: ${res.status}`);
      users.push({ id: res.body.user.id, token: res.body.token });
    }

    const toCompleted: number[] = [];
    const outcomes = new Map<string, number>();
    let seq = 0;
    const t0 = performance.now();
    const deadline = t0 + SECONDS * 1000;
    const client = async (me: { token: string }) => {
      while (performance.now() < deadline) {
        const symbol = `B${(seq++).toString(36)}${randomBytes(3).toString("hex")}`
          .toUpperCase()
          .slice(0, 11);
        const t = performance.now();
        const res = await api<Saga>(
          base,
          "POST",
          "/api/launches",
          {
            token: { name: "Bench", symbol, decimals: 0, initialSupply: "1000000" },
            liquidity: { amount: "250000" },
            marketing: { budget: "100" },
          },
          me.token,
        );
        let saga = res.body;
        while (res.status === 202 && !FINAL.includes(saga.state)) {
          await new Promise(r => setTimeout(r, 20));
          saga = (await api<Saga>(base, "GET", `/api/launches/${saga.id}`, undefined, me.token))
            .body;
        }
        const outcome = res.status >= 400 ? `HTTP ${res.status}` : saga.state;
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        if (saga.state === "completed") toCompleted.push(performance.now() - t);
      }
    };
    await Promise.all(users.map(client));
    const elapsed = (performance.now() - t0) / 1000;

    console.log(
      `-- ${mode === "embedded" ? "embedded (one process)" : "over NATS (a process per service)"}`,
    );
    console.log(`clients: ${CLIENTS}, NeDB files in ${dataDir}`);
    printOutcomes("launches", "completed", outcomes, toCompleted, elapsed);
    const goal = GOALS[mode] ?? GOALS.nats;
    const rate = toCompleted.length / elapsed;
    const p99 = percentile(toCompleted, 0.99);
    const all = [...outcomes.values()].reduce((s, n) => s + n, 0);
    const goalText = `≥ ${goal.rate}/s, p99 < ${goal.p99} ms, all completed`;
    console.log(`goal: ${goalText}`);
    return {
      bench: "launches",
      case: `launches ${mode === "embedded" ? "embedded" : "over NATS"} (sagas)`,
      value: rate,
      unit: "ops/s",
      p50: percentile(toCompleted, 0.5),
      p99,
      goal: goalText,
      met: rate >= goal.rate && p99 < goal.p99 && toCompleted.length === all,
      ...(toCompleted.length < all
        ? { note: `${all - toCompleted.length} of ${all} launches did not complete` }
        : {}),
    };
  } finally {
    await stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  install(); // SIGINT/SIGTERM still stop the platform (its exit handler)
  const rows: Row[] = [];
  for (const mode of MODES) {
    if (mode === "nats" && !(await answers(NATS))) {
      console.log(`-- over NATS: skipped, nothing answers at ${NATS} (start nats-server)`);
      continue;
    }
    rows.push(await bench(mode));
  }
  report("launches", rows);
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
