import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import Datastore from "@seald-io/nedb";
import { openNedbStore } from "../lib/store/nedb/nedb-store";
import { TransferEngine } from "../lib/tokens/transfer-engine";
import type { AllowanceDoc, BalanceDoc, JournalDoc } from "../lib/tokens/ledger";

/**
 * What a large journal costs a tokens node on NeDB files: how long a start takes with
 * BENCH_JOURNAL_ENTRIES (1,000,000) done transfers, how long pruning them takes, how long
 * the next start takes, and the longest the event loop is held while the file is
 * rewritten (compaction): NeDB's own rewrite beside the store's, which goes in slices.
 *
 * Run: npm run bench -- journal (about a minute and 2 GB of memory for a million entries).
 */

const ENTRIES = Number(process.env.BENCH_JOURNAL_ENTRIES ?? 1_000_000);
const SPEC = { unique: ["key"], indexes: ["createdAt"], sparse: ["pending"] };
const quiet = { info: () => undefined, warn: () => undefined };

const seconds = (since: bigint): string =>
  (Number(process.hrtime.bigint() - since) / 1e9).toFixed(2);

/**
 * The journal file as a node of the previous version would have written it: done
 * transfers, old enough to prune, a few per millisecond as under load.
 */
function writeJournal(file: string, n: number, oldest: number): void {
  const fd = fs.openSync(file, "w");
  for (let i = 0; i < n; i += 10_000) {
    let text = "";
    for (let k = i; k < Math.min(n, i + 10_000); k++) {
      const doc: JournalDoc = {
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
      };
      text += JSON.stringify(doc) + "\n";
    }
    fs.writeSync(fd, text);
  }
  // The indexes the previous version declared (state among them): the store drops what
  // its spec no longer names when it opens the file.
  for (const [fieldName, unique] of [
    ["key", true],
    ["state", false],
    ["createdAt", false],
  ])
    fs.writeSync(
      fd,
      JSON.stringify({ $$indexCreated: { fieldName, unique, sparse: false } }) + "\n",
    );
  fs.closeSync(fd);
}

/** The longest the event loop was held (ms) while `work` ran. */
async function longestStall(work: () => Promise<unknown>): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  await work();
  h.disable();
  return h.max / 1e6;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-journal-bench-"));
  const file = path.join(dir, "journal.db");
  try {
    writeJournal(file, ENTRIES, Date.now() - 9 * 24 * 3600_000);
    console.log(
      `journal.db: ${ENTRIES} done entries, ${(fs.statSync(file).size / 1e6).toFixed(0)} MB`,
    );

    let t = process.hrtime.bigint();
    const journal = await openNedbStore<JournalDoc>("journal", SPEC, {
      filename: file,
      sync: true,
    });
    console.log(`start (load) with ${ENTRIES} entries: ${seconds(t)} s`);

    const sliced = await longestStall(() => journal.compact());
    console.log(`compaction, sliced rewrite: longest event-loop stall ${sliced.toFixed(0)} ms`);
    const plain = new Datastore({ filename: path.join(dir, "plain.db") });
    await plain.loadDatabaseAsync();
    await plain.insertAsync((await journal.find({})).map(({ _id, ...rest }) => ({ _id, ...rest })));
    const own = await longestStall(() => plain.compactDatafileAsync());
    console.log(`compaction, NeDB's own rewrite: longest event-loop stall ${own.toFixed(0)} ms`);
    await plain.dropDatabaseAsync();

    const engine = new TransferEngine(
      {
        journal,
        balances: await openNedbStore<BalanceDoc>("balances", {}),
        allowances: await openNedbStore<AllowanceDoc>("allowances", {}),
      },
      { write: async () => undefined, has: async () => false },
      { isActive: async () => true },
      quiet,
      { owner: "bench", leaseMs: 30_000, retentionMs: 7 * 24 * 3600_000 },
    );
    t = process.hrtime.bigint();
    const pruned = await engine.prune();
    console.log(`prune: ${pruned} entries in ${seconds(t)} s`);
    // What the store's periodic compaction (every 10 minutes) then does to the file.
    t = process.hrtime.bigint();
    await journal.compact();
    console.log(`compaction after pruning: ${seconds(t)} s`);
    await journal.close();

    t = process.hrtime.bigint();
    const after = await openNedbStore<JournalDoc>("journal", SPEC, { filename: file });
    console.log(
      `start after pruning and compaction (${await after.count({})} entries): ${seconds(t)} s`,
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
