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
 * env: BENCH_ONLY=gateway,rtt to run some; BENCH_SECONDS (5 here) and the benches' own.
 */

const BENCHES: Array<{ name: string; env?: Record<string, string> }> = [
  { name: "gateway" },
  { name: "transfers", env: { BENCH_MODES: "embedded,nats" } },
  { name: "rtt" },
  { name: "events" },
  { name: "startup" },
  { name: "launches" },
  { name: "market" },
];

let current: ChildProcess | undefined;
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => {
    // The bench stops its own children (bench/procs.ts); the suite waits for it.
    interrupted = true;
    current?.kill(signal);
  });

function run(file: string, env: NodeJS.ProcessEnv): Promise<number | null> {
  return new Promise(resolve => {
    current = spawn(process.execPath, [...NODE_FLAGS, file], { env, stdio: "inherit" });
    current.once("exit", code => resolve(code));
  });
}

async function main(): Promise<void> {
  hasWrk(); // says once, up front, when wrk is missing
  const only = (process.env.BENCH_ONLY ?? "").split(",").filter(Boolean);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-bench-suite-"));
  const file = path.join(tmp, "rows.jsonl");
  fs.writeFileSync(file, "");
  const failed: Row[] = [];
  const t0 = Date.now();
  try {
    for (const b of BENCHES) {
      if (interrupted || (only.length && !only.includes(b.name))) continue;
      console.log(`\n=== bench:${b.name}`);
      const code = await run(path.join(__dirname, `${b.name}.js`), {
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
          note: `bench:${b.name} exited ${code} (its output above says why)`,
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
