import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  ACTIVITY,
  ACTIVITY_COLLECTIONS,
  ActivityLog,
  type ActivityDoc,
  type ListQuery,
} from "../lib/activity/activity-log";
import { TOKEN_EVENTS, type DomainEvent, type TokenTransferred } from "../lib/events/domain";
import { SqliteDatabase } from "../lib/store/sqlite/sqlite-database";
import { report, type Row } from "./report";

/**
 * An activity page read with BENCH_ACTIVITY_ROWS (1,000,000) rows stored on the activity
 * service's SQLite file (issue 22: goal p99 < 10 ms). The rows are transfers, written as the
 * service writes them (lib/activity/activity-log.ts, batches of events in transactions):
 * 2,000 accounts and 50 tokens, one account in every tenth transfer (a history of about
 * 100,000 rows) and one token in every fifth. Then pages of 20 are read from a fresh
 * start of the file, at random cursors through the whole history: an account's (all its
 * rows; and filtered by two types), and a token's transfers (its lead rows). p50/p99 of
 * BENCH_ACTIVITY_READS reads each.
 *
 * Run: npm run bench -- activity
 */

const ROWS = Number(process.env.BENCH_ACTIVITY_ROWS ?? 1_000_000);
const READS = Number(process.env.BENCH_ACTIVITY_READS ?? 2000);
const ACCOUNTS = 2000;
const TOKENS = 50;
const GOAL_MS = 10;

const ms = (since: bigint): number => Number(process.hrtime.bigint() - since) / 1e6;
const rssMb = (): string => (process.memoryUsage().rss / 1e6).toFixed(0);

/** A deterministic pseudo-random sequence, so every run writes the same history. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function transfer(i: number, rnd: () => number): DomainEvent<TokenTransferred> {
  const pick = (n: number) => Math.floor(rnd() * n);
  const from = i % 10 === 0 ? "usr_whale" : `usr_${pick(ACCOUNTS)}`;
  let to = `usr_${pick(ACCOUNTS)}`;
  if (to === from) to = "usr_other";
  const tokenId = i % 5 === 0 ? "tok_big" : `tok_${pick(TOKENS)}`;
  const transferId = `trf_${i.toString(16).padStart(24, "0")}`;
  const at = new Date(Date.UTC(2026, 0, 1) + i * 10).toISOString();
  return {
    eventId: `${TOKEN_EVENTS.transferred}:${transferId}`,
    type: TOKEN_EVENTS.transferred,
    occurredAt: at,
    data: { transferId, tokenId, from, to, amount: "1", createdAt: at, balances: [] },
  };
}

async function write(db: SqliteDatabase, rows: number): Promise<void> {
  const rnd = random(22);
  const events = Math.ceil(rows / 2); // two rows each: the sender's and the recipient's
  const started = process.hrtime.bigint();
  for (let i = 0; i < events; i += 2500) {
    const batch: DomainEvent[] = [];
    for (let k = i; k < Math.min(events, i + 2500); k++) batch.push(transfer(k, rnd));
    await db.transaction(tx => ActivityLog.record(tx, batch));
    if ((i / 2500) % 40 === 0 && i > 0)
      console.log(
        `  ${(i * 2).toLocaleString("en-US")} rows written, ${(ms(started) / 1000).toFixed(0)} s`,
      );
  }
  console.log(
    `${(events * 2).toLocaleString("en-US")} rows written in ${(ms(started) / 1000).toFixed(1)} s`,
  );
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

/** `READS` pages of `q`, each at a random row's cursor of the whole history of `q`. */
async function measure(
  log: ActivityLog,
  name: string,
  q: ListQuery,
  cursors: string[],
): Promise<Row> {
  const rnd = random(7);
  const times: number[] = [];
  let rows = 0;
  for (let i = 0; i < READS; i++) {
    const cursor = i % 10 === 0 ? undefined : cursors[Math.floor(rnd() * cursors.length)];
    const order = i % 2 === 0 ? "desc" : "asc";
    const t = process.hrtime.bigint();
    const page = await log.list({ ...q, cursor, order, limit: 20 });
    times.push(ms(t));
    rows += page.rows.length;
  }
  times.sort((a, b) => a - b);
  const p50 = percentile(times, 0.5);
  const p99 = percentile(times, 0.99);
  console.log(
    `${name}: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${times.at(-1)!.toFixed(2)} ms ` +
      `(${READS} pages of 20, ${(rows / READS).toFixed(1)} rows each)`,
  );
  return {
    bench: "activity",
    case: `activity page (20) by ${name}, ${ROWS.toLocaleString("en-US")} rows, SQLite`,
    value: p99,
    unit: "ms",
    p50,
    p99,
    goal: `p99 < ${GOAL_MS} ms`,
    met: p99 < GOAL_MS,
  };
}

/** Cursors spread through the whole of `q`'s history: every 50th row's. */
async function cursorsOf(log: ActivityLog, q: ListQuery): Promise<string[]> {
  const cursors: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await log.list({ ...q, cursor, order: "asc", limit: 100 });
    cursors.push(...page.rows.filter((_, i) => i % 50 === 0).map(r => r.cursor));
    if (!page.next) return cursors;
    cursor = page.next;
  }
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-activity-bench-"));
  const filename = path.join(dir, "activity.sqlite");
  try {
    const writer = SqliteDatabase.open(ACTIVITY_COLLECTIONS, { filename, sync: false });
    await write(writer, ROWS);
    await writer.close();
    console.log(`activity.sqlite: ${(fs.statSync(filename).size / 1e6).toFixed(0)} MB`);

    const rssBefore = rssMb();
    const t = process.hrtime.bigint();
    const db = SqliteDatabase.open(ACTIVITY_COLLECTIONS, { filename, sync: true });
    const log = new ActivityLog(db.store<ActivityDoc>(ACTIVITY));
    await log.list({ actorId: "usr_whale", limit: 1 });
    console.log(
      `start, first page answered: ${ms(t).toFixed(0)} ms; RSS ${rssBefore} → ${rssMb()} MB`,
    );

    const whale: ListQuery = { actorId: "usr_whale" };
    const typed: ListQuery = { actorId: "usr_1", types: ["transfer.in", "transfer.out"] };
    const token: ListQuery = { tokenId: "tok_big", types: ["transfer.out"] };
    const [whaleCursors, typedCursors, tokenCursors] = [
      await cursorsOf(log, whale),
      await cursorsOf(log, typed),
      await cursorsOf(log, token),
    ];
    console.log(
      `histories: usr_whale ${whaleCursors.length * 50} rows, usr_1 ${typedCursors.length * 50}, ` +
        `tok_big ${tokenCursors.length * 50} transfers (about)`,
    );
    const rows = [
      await measure(log, "account", whale, whaleCursors),
      await measure(log, "account and types", typed, typedCursors),
      await measure(log, "token", token, tokenCursors),
    ];
    console.log(`RSS after the reads: ${rssMb()} MB`);
    await db.close();
    report("activity", rows);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
