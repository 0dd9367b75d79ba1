import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { SqliteDatabase } from "../lib/store/sqlite/sqlite-database";

/**
 * What group commit buys the SQLite store: transactions per second on a file with
 * synchronous=FULL (an fsync per COMMIT), one transaction per commit (each awaited before
 * the next) beside BENCH_SQLITE_CONCURRENCY (50) in flight, which share commits. Each
 * transaction is a transfer's shape: read an account, update two, insert a journal entry.
 *
 * Run: npm run build && node dist/bench/sqlite-commit.js (BENCH_SQLITE_SECONDS, default 5 per mode).
 */

const SECONDS = Number(process.env.BENCH_SQLITE_SECONDS ?? 5);
const CONCURRENCY = Number(process.env.BENCH_SQLITE_CONCURRENCY ?? 50);

interface Account {
  _id: string;
  balance: number;
  [k: string]: unknown;
}

async function run(label: string, inFlight: number): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-bench-sqlite-"));
  const db = SqliteDatabase.open(
    { accounts: {}, journal: { unique: ["key"], indexes: ["at"] } },
    { filename: path.join(dir, "bench.sqlite"), sync: true },
  );
  try {
    await db
      .store<Account>("accounts")
      .insertMany(Array.from({ length: 100 }, (_, i) => ({ _id: `a${i}`, balance: 1_000_000 })));
    let seq = 0;
    const transfer = () => {
      const n = seq++;
      return db.transaction(async tx => {
        const accounts = tx.store<Account>("accounts");
        const from = await accounts.findOne({ _id: `a${n % 100}` });
        if (!from || from.balance < 1) throw new Error("no funds");
        await accounts.updateOne({ _id: from._id }, { $inc: { balance: -1 } });
        await accounts.updateOne({ _id: `a${(n + 1) % 100}` }, { $inc: { balance: 1 } });
        await tx.store("journal").insert({ _id: `j${n}`, key: `k${n}`, at: Date.now() });
      });
    };
    const until = Date.now() + SECONDS * 1000;
    let done = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (Date.now() < until) {
          await transfer();
          done++;
        }
      }),
    );
    const rate = done / SECONDS;
    console.log(`${label.padEnd(28)} ${Math.round(rate).toString().padStart(7)} transactions/s`);
    return rate;
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const one = await run("1 per commit", 1);
  const grouped = await run(`${CONCURRENCY} concurrent, grouped`, CONCURRENCY);
  console.log(`group commit: ×${(grouped / one).toFixed(1)}`);
}

void main();
