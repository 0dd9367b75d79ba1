import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { interrupted } from "./procs";

/**
 * One table for every bench: each row a figure (a rate with p50/p99, or one value such as
 * a readiness time or an RSS), the anchor it is compared with, and the goal of issue 15.
 * A bench run alone prints its rows and writes bench/results/<bench>.json; under
 * `npm run bench` (bench/suite.ts) it appends them to BENCH_RESULTS_FILE for the one table.
 */

export const ROOT = path.resolve(__dirname, "../..");
export const RESULTS_DIR = path.join(ROOT, "bench/results");

export interface Row {
  bench: string;
  /** e.g. "f gateway GET over NATS". */
  case: string;
  /** A rate (req/s, ops/s) or a single value (ms, MB). */
  value: number;
  unit: "req/s" | "ops/s" | "ms" | "MB";
  p50?: number;
  p99?: number;
  /** The case compared with, and value / its value. */
  anchor?: string;
  ratio?: number;
  /** What the "vs anchor" column says when not "<ratio> % of <anchor>" (e.g. a p50 ratio). */
  compare?: string;
  goal?: string;
  met?: boolean;
  note?: string;
}

/** Formatting for the table. */
const fmt = (n: number | undefined, digits = 0): string =>
  n === undefined || !Number.isFinite(n)
    ? "—"
    : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

export function formatTable(rows: Row[]): string {
  const head = ["case", "figure", "p50 ms", "p99 ms", "vs anchor", "goal", "met?"];
  const body = rows.map(r => [
    r.case,
    `${fmt(r.value, r.unit === "ms" || r.unit === "MB" ? 1 : 0)} ${r.unit}`,
    fmt(r.p50, 2),
    fmt(r.p99, 2),
    r.compare ?? (r.ratio === undefined ? "" : `${fmt(r.ratio * 100)} % of ${r.anchor}`),
    r.goal ?? "",
    r.met === undefined ? "" : r.met ? "yes" : "NO",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map(b => b[i].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 1 || i === 2 || i === 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(" | ")} |`;
  const notes = rows.filter(r => r.note).map(r => `- ${r.case}: ${r.note}`);
  return [
    line(head),
    `|${widths.map(w => "-".repeat(w + 2)).join("|")}|`,
    ...body.map(line),
    ...(notes.length ? ["", ...notes] : []),
  ].join("\n");
}

/** Where and how the figures were made: they mean little without it. */
export function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    host: os.hostname(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: os.loadavg().map(n => Number(n.toFixed(2))),
    node: process.version,
    seconds: Number(process.env.BENCH_SECONDS ?? 5),
    connections: Number(process.env.BENCH_CONNECTIONS ?? 50),
  };
}

/** Prints a bench's rows and files them (see above). */
export function report(bench: string, rows: Row[]): void {
  console.log(`\n${bench}:\n${formatTable(rows)}`);
  const file = process.env.BENCH_RESULTS_FILE;
  if (file) {
    fs.appendFileSync(file, rows.map(r => JSON.stringify(r)).join("\n") + "\n");
    return;
  }
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(
    path.join(RESULTS_DIR, `${bench}.json`),
    JSON.stringify({ machine: machine(), rows }, null, 2) + "\n",
  );
}

/** A rate row compared with an anchor's rate: ratio and whether it reaches `atLeast`. */
export function versus(
  row: Omit<Row, "anchor" | "ratio" | "goal" | "met">,
  anchor: { case: string; value: number } | undefined,
  atLeast: number,
): Row {
  if (!anchor) return { ...row, goal: `≥ ${fmtRatio(atLeast, "an anchor that did not run")}` };
  const ratio = row.value / anchor.value;
  return {
    ...row,
    anchor: anchor.case.split(" ")[0],
    ratio,
    goal: `≥ ${fmtRatio(atLeast, anchor.case.split(" ")[0])}`,
    met: ratio >= atLeast,
  };
}

const fmtRatio = (r: number, of: string) =>
  r >= 2 ? `${r}× ${of}` : `${Math.round(r * 100)} % of ${of}`;

/** Runs a bench's main, then its cleanup; a failure sets the exit code, never hangs. */
export function runMain(main: () => Promise<void>, cleanup: () => Promise<void>): void {
  main()
    .catch((err: unknown) => {
      // Stopped by a signal: its children went first, so the failure is the stop itself.
      if (!interrupted()) console.error(err);
      process.exitCode = interrupted() ? 130 : 1;
    })
    .finally(() => cleanup())
    .then(
      () => process.exit(),
      () => process.exit(1),
    );
}
