import fs from "node:fs";
import path from "node:path";
import { SERVICE_START_ORDER } from "../bin/runner-args";
import { startPlatform } from "./platform";
import { cleanup, rssMb } from "./procs";
import { ROOT, report, runMain, type Row } from "./report";

/**
 * How soon each node serves: every compiled service started as a node of its own over NATS
 * (JetStream channels, Redis), one after another in `npm run cluster`'s order, each timed
 * from spawn to its /health/ready (HEALTH_PORT) answering 200: the node's broker started
 * and connected, its stores open. One at a time so each start has the CPU the machine has.
 * Its RSS once ready is shown too (idle; bench/gateway.ts reads it after load).
 *
 * Goal (issue 15): each node ready < 1.5 s after start.
 *
 * env: BENCH_STARTUP_SERVICES (every compiled service).
 */

const BENCH = "startup";
const GOAL_MS = 1500;

function services(): string[] {
  const given = (process.env.BENCH_STARTUP_SERVICES ?? "").split(",").filter(Boolean);
  if (given.length) return given;
  const compiled = fs
    .readdirSync(path.join(ROOT, "dist/services"))
    .filter(f => f.endsWith(".service.js"))
    .map(f => f.slice(0, -".service.js".length));
  const rank = (s: string) => {
    const i = SERVICE_START_ORDER.indexOf(s.split(".")[0]);
    return i >= 0 ? i : SERVICE_START_ORDER.length - 1.5; // versioned and unknown ones before the gateway
  };
  return compiled.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

async function main(): Promise<void> {
  const names = services();
  console.log(`startup: ${names.join(", ")}, one after another…`);
  const p = await startPlatform({ mode: "nats", services: names, sequential: true });
  const rows: Row[] = p.nodes.map(n => ({
    bench: BENCH,
    case: `k ready: ${n.service}`,
    value: n.readyMs ?? NaN,
    unit: "ms",
    goal: "< 1,500 ms",
    met: (n.readyMs ?? Infinity) < GOAL_MS,
    note: `RSS when ready ${(rssMb(n.child.pid) ?? NaN).toFixed(0)} MB`,
  }));
  await p.stop();
  report(BENCH, rows);
}

if (require.main === module) runMain(main, cleanup);
