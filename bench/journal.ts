import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { SqliteDatabase } from "../lib/store/sqlite/sqlite-database";
import { TransferEngine } from "../lib/tokens/transfer-engine";
import type { JournalDoc } from "../lib/tokens/ledger";

/**
 * What a large journal costs a tokens node on its SQLite file: how long a start takes
 * with BENCH_JOURNAL_ENTRIES (1,000,000) done transfers, the node's RSS before and after
 * (a disk-resident store: it must not grow with what is stored), how long pruning them
 * takes, and the next start.
 *
 * Run: npm run bench -- journal
 */

const ENTRIES = Number(process.env.BENCH_JOURNAL_ENTRIES ?? 1_000_000);
const SPECS = {
  tokens: {},
  balances: { indexes: ["tokenId", "account"] },
  allowances: { indexes: ["tokenId"] },
  journal: { unique: ["key"], indexes: ["createdAt"] },
  outbox: {},
};

const seconds = (since: bigint): string =>
  (Number(process.hrtime.bigint() - since) / 1e9).toFixed(2);
const rssMb = (): string => (process.memoryUsage().rss / 1e6).toFixed(0);

/** Done transfers, old enough to prune, a few per millisecond as under load. */
async function writeJournal(db: SqliteDatabase, n: number, oldest: number): Promise<void> {
  for (let i = 0; i < n; i += 10_000) {
    const docs: JournalDoc[] = [];
    for (let k = i; k < Math.min(n, i + 10_000); k++)
      docs.push({
        _id: `trf_${k.toString(16).padStart(24, "0")}`,
        key: `key:usr_bench:${k}`,
        fingerprint: "bench",
        kind: "transfer",
        tokenId: "tok_bench",
        from: "usr_a",
        to: "usr_b",
        amount: "1",
        spender: null,
        state: "done",
        error: null,
        createdAt: new Date(oldest + Math.floor(k / 3)).toISOString(),
      });
    await db.transaction(tx => tx.store<JournalDoc>("journal").insertMany(docs));
  }
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-journal-bench-"));
  const filename = path.join(dir, "tokens.sqlite");
  try {
    const writer = SqliteDatabase.open(SPECS, { filename, sync: false });
    await writeJournal(writer, ENTRIES, Date.now() - 9 * 24 * 3600_000);
    await writer.close();
    console.log(
      `tokens.sqlite: ${ENTRIES} done entries, ${(fs.statSync(filename).size / 1e6).toFixed(0)} MB`,
    );

    const rssBefore = rssMb();
    let t = process.hrtime.bigint();
    const db = SqliteDatabase.open(SPECS, { filename, sync: true });
    const journal = db.store<JournalDoc>("journal");
    // A start is ready once it answers: a replay's lookup by key.
    await journal.findOne({ key: `key:usr_bench:${ENTRIES - 1}` });
    console.log(`start with ${ENTRIES} entries, first lookup answered: ${seconds(t)} s`);
    console.log(`RSS: ${rssBefore} MB before the start, ${rssMb()} MB after`);
    t = process.hrtime.bigint();
    console.log(`count: ${await journal.count({})} in ${seconds(t)} s`);

    const engine = new TransferEngine(
      db,
      {
        write: async () => undefined,
        has: async () => false,
        writeIn: async () => () => undefined,
      },
      { isActive: async () => true },
      { retentionMs: 7 * 24 * 3600_000 },
    );
    t = process.hrtime.bigint();
    const pruned = await engine.prune();
    console.log(`prune: ${pruned} entries in ${seconds(t)} s; RSS ${rssMb()} MB`);
    await db.close();

    t = process.hrtime.bigint();
    const after = SqliteDatabase.open(SPECS, { filename });
    console.log(
      `start after pruning (${await after.store("journal").count({})} entries): ${seconds(t)} s`,
    );
    await after.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
