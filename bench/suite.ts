import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { NODE_FLAGS } from "../bin/runner-args";
import { hasWrk } from "./load";
import { formatTable, machine, RESULTS_DIR, type Row } from "./report";

/**
 * `npm run bench`: every bench of issue 15, one after another, each in a process of its
 * own (so one's leftovers never slow the next), then ONE table of all their rows, also
 * written to bench/results/latest.json with the machine it ran on. A bench that fails is
 * a row saying so; the others still run.
 *
 * `npm run bench -- <case>` runs that case alone instead, as its own script did: its own
 * defaults (e.g. `transfers` alone is embedded and 10 s), its own output, its exit code.
 * Several cases (`npm run bench -- gateway rtt`) run as the suite of those only.
 *
 * env: BENCH_ONLY=gateway,rtt to run some; BENCH_SECONDS (5 here) and the benches' own.
 */

interface Case {
  name: string;
  /** What the suite sets for it (a case run alone keeps its own defaults). */
  env?: Record<string, string>;
  /** Node flags instead of the nodes' (package.json config.node_flags). */
  nodeFlags?: string[];
  /** The script it runs, when not `<name>.js`. */
  script?: string;
  /** Its env unless the caller's says otherwise, alone and in the suite. */
  defaults?: Record<string, string>;
  /** Not part of the whole suite: run only by name. */
  alone?: boolean;
  about: string;
}

const CASES: Case[] = [
  { name: "anchors", alone: true, about: "a–e alone, beside (a)" },
  { name: "gateway", about: "a–e, then f and g, ratios, RSS per node" },
  {
    name: "transfers",
    env: { BENCH_MODES: "embedded,nats" },
    about: "h embedded (BENCH_MODES=embedded,nats adds the cluster)",
  },
  {
    name: "transfers-pg",
    script: "transfers",
    defaults: { BENCH_MODES: "embedded,postgres" },
    alone: true,
    about: "h embedded beside l: the same transfers on Fastify + PostgreSQL",
  },
  { name: "rtt", about: "i: broker.call vs raw NATS request/reply" },
  { name: "events", about: "j: outbox → JetStream → catalog lag at 1,000 transfers/s" },
  {
    name: "live",
    about: "m event → SSE latency at 1,000 transfers/s; n 10,000 streams on one gateway",
  },
  { name: "startup", about: "k: each node's time to /health/ready" },
  { name: "launches", about: "launch sagas, embedded and over NATS" },
  { name: "market", about: "NFT purchase sagas, embedded" },
  {
    name: "offers",
    about: "offers made and accepted, then bids racing on auctions (sagas, escrow), embedded",
  },
  { name: "webhooks", about: "webhook deliveries/s to a local receiver, embedded" },
  {
    name: "journal",
    alone: true,
    // A million journal entries in one heap; the nodes' flags would change what it measures.
    nodeFlags: ["--max-old-space-size=8192"],
    about: "a tokens node with a million journal entries",
  },
  {
    name: "activity",
    alone: true,
    about: "an activity page read with a million rows stored (issue 22)",
  },
];

function usage(): string {
  const width = Math.max(...CASES.map(c => c.name.length));
  return [
    "usage: npm run bench [-- <case> [<case> …]]",
    "",
    `  ${"(none)".padEnd(width)}  the suite: every case but anchors, transfers-pg, journal and activity, one table`,
    ...CASES.map(c => `  ${c.name.padEnd(width)}  ${c.about}`),
  ].join("\n");
}

let current: ChildProcess | undefined;
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => {
    // The bench stops its own children (bench/procs.ts); the suite waits for it.
    interrupted = true;
    current?.kill(signal);
  });

function run(c: Case, env: NodeJS.ProcessEnv): Promise<number | null> {
  return new Promise(resolve => {
    const file = path.join(__dirname, `${c.script ?? c.name}.js`);
    current = spawn(process.execPath, [...(c.nodeFlags ?? NODE_FLAGS), file], {
      env,
      stdio: "inherit",
    });
    current.once("exit", code => resolve(code));
  });
}

async function main(): Promise<void> {
  const named = process.argv.slice(2);
  if (named.some(n => n === "-h" || n === "--help")) return void console.log(usage());
  const unknown = named.filter(n => !CASES.some(c => c.name === n));
  if (unknown.length) {
    console.error(`no bench case ${unknown.join(", ")}\n\n${usage()}`);
    process.exitCode = 2;
    return;
  }
  if (named.length === 1) {
    // One case, exactly as its own script ran it.
    const c = CASES.find(x => x.name === named[0]) as Case;
    const code = await run(c, { ...c.defaults, ...process.env });
    process.exitCode = code ?? 1;
    return;
  }
  hasWrk(); // says once, up front, when wrk is missing
  const only = named.length ? named : (process.env.BENCH_ONLY ?? "").split(",").filter(Boolean);
  const benches = only.length
    ? CASES.filter(c => only.includes(c.name))
    : CASES.filter(c => !c.alone);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-bench-suite-"));
  const file = path.join(tmp, "rows.jsonl");
  fs.writeFileSync(file, "");
  const failed: Row[] = [];
  const t0 = Date.now();
  try {
    for (const b of benches) {
      if (interrupted) continue;
      console.log(`\n=== ${b.name}`);
      const code = await run(b, {
        ...b.defaults,
        ...process.env,
        BENCH_SECONDS: process.env.BENCH_SECONDS ?? "5",
        ...b.env,
        BENCH_RESULTS_FILE: file,
      });
      if (code !== 0)
        failed.push({
          bench: b.name,
          case: `${b.name}: FAILED`,
          value: NaN,
          unit: "ms",
          met: false,
          note: `${b.name} exited ${code} (its output above says why)`,
        });
    }
    const rows = [
      ...fs
        .readFileSync(file, "utf8")
        .split("\n")
        .filter(Boolean)
        .map(l => JSON.parse(l) as Row),
      ...failed,
    ];
    const about = machine();
    console.log(
      `\n=== mintmesh bench, ${about.date}, ${about.cpus} × ${about.cpuModel}, node ${about.node}, ` +
        `${about.seconds} s runs, ${about.connections} connections, ` +
        `${((Date.now() - t0) / 1000).toFixed(0)} s in all\n`,
    );
    console.log(formatTable(rows));
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    const out = path.join(RESULTS_DIR, "latest.json");
    fs.writeFileSync(out, JSON.stringify({ machine: about, rows }, null, 2) + "\n");
    console.log(`\nwritten: ${path.relative(process.cwd(), out)}`);
    if (failed.length || interrupted) process.exitCode = 1;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
