import fs from "node:fs";
import path from "node:path";
import type { DatabaseSync } from "node:sqlite";
import type { CollectionSpec, Database, Doc, Store, TxStores } from "../store";
import { StoreUnavailableError, storeHealth } from "../health";
import { SqliteCollection, errcodeOf } from "./sqlite-collection";
import { regexpFunction } from "./sql-query";
import { SqliteStore, TxView } from "./sqlite-store";

/**
 * A service's collections in one SQLite file (node:sqlite, no native addon), with
 * transactions and group commit. node:sqlite is synchronous, so one writer connection
 * runs the transactions one after another; those that arrive in one turn of the event
 * loop share one BEGIN…COMMIT (one fsync), each in its own SAVEPOINT so a throw undoes
 * only that one. Each is acknowledged once the COMMIT is durable. Reads outside a
 * transaction go to a second connection (WAL: it sees the last commit, never a
 * transaction under way); in memory there is one connection, read only between batches.
 */

export interface SqliteDatabaseOptions {
  /** The database file; none: in memory. */
  filename?: string;
  /** synchronous=FULL, an fsync per commit (default true); false: OFF, for tests. */
  sync?: boolean;
  /** Named in readiness and logs, e.g. "tokens/sqlite". */
  label?: string;
  /** How often a database that could not write tries the disk again (ms). */
  probeMs?: number;
  logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

interface Job {
  fn: (tx: TxStores) => Promise<unknown>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };

/** A transaction's savepoint: the same name nests, and the batch releases each in turn. */
const SAVEPOINT = "mm_tx";

/** SQLITE_FULL, SQLITE_IOERR (and their extended codes): the disk, not the data. */
export const isDiskError = (err: unknown): boolean => {
  const code = errcodeOf(err);
  return code !== undefined && [13, 10].includes(code & 0xff);
};

const isCorrupt = (err: unknown): boolean => {
  const code = errcodeOf(err);
  return code !== undefined && [11, 26].includes(code & 0xff);
};

/** SQLite ended the batch's transaction itself (it does on a full disk): none of it holds. */
class SqliteBatchLost extends Error {
  constructor() {
    super("SQLite rolled the transaction back");
    this.name = "SqliteBatchLost";
  }
}

export class SqliteDatabase implements Database {
  readonly label: string;
  private readonly collections = new Map<string, SqliteCollection>();
  private readonly stores = new Map<string, SqliteStore<Doc>>();
  private queue: Job[] = [];
  private draining: Promise<void> | null = null;
  /** Set while a batch holds the writer: in memory, reads wait for it. */
  private batch: Promise<void> | null = null;
  private broken: Error | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private closed = false;

  /** Reads outside a transaction, for a file; in memory they share the writer. */
  private reader: DatabaseSync | null = null;

  private constructor(
    readonly writer: DatabaseSync,
    private readonly opts: SqliteDatabaseOptions,
  ) {
    this.label = opts.label ?? opts.filename ?? "sqlite";
  }

  /** Opens (or creates) the file and makes its tables and indexes what `specs` say. */
  static open(
    specs: Record<string, CollectionSpec>,
    opts: SqliteDatabaseOptions = {},
  ): SqliteDatabase {
    const file = opts.filename;
    // Loaded on first use: node prints an ExperimentalWarning for node:sqlite, which a node
    // on MongoDB has no reason to show.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { DatabaseSync } = require("node:sqlite") as typeof import("node:sqlite");
    let writer: DatabaseSync | undefined;
    let reader: DatabaseSync | undefined;
    try {
      writer = new DatabaseSync(file ?? ":memory:");
      if (file) {
        writer.exec("PRAGMA journal_mode = WAL");
        // The WAL is checkpointed at 1 MB and cut back to it: it never grows past what the
        // database needs, and a disk that filled up gets that room back (see probe()).
        writer.exec("PRAGMA wal_autocheckpoint = 256");
        writer.exec("PRAGMA journal_size_limit = 1048576");
        // A file that is not a database, or a damaged one, refuses the start here.
        const check = writer.prepare("PRAGMA quick_check(1)").get() as { quick_check: string };
        if (check.quick_check !== "ok")
          throw Object.assign(new Error(check.quick_check), { errcode: 11 });
      }
      writer.exec(`PRAGMA synchronous = ${opts.sync === false ? "OFF" : "FULL"}`);
      writer.function("mm_regexp", { deterministic: true }, regexpFunction);
      const db = new SqliteDatabase(writer, opts);
      writer.exec("BEGIN IMMEDIATE");
      for (const [name, spec] of Object.entries(specs)) {
        const c = new SqliteCollection(name);
        c.ensureSchema(writer, spec);
        db.collections.set(name, c);
        db.stores.set(name, new SqliteStore(name, c, db));
      }
      writer.exec("COMMIT");
      if (file) {
        reader = new DatabaseSync(file);
        reader.exec("PRAGMA query_only = ON");
        reader.function("mm_regexp", { deterministic: true }, regexpFunction);
        db.reader = reader;
      }
      return db;
    } catch (err) {
      if (reader?.isOpen) reader.close();
      if (writer?.isOpen) writer.close();
      if (file && isCorrupt(err))
        throw new Error(`${file} is corrupt (${(err as Error).message}); refusing to start on it`);
      throw err;
    }
  }

  collection(name: string): SqliteCollection {
    const c = this.collections.get(name);
    if (!c) throw new Error(`Unknown collection ${name}`);
    return c;
  }

  store<T extends Doc>(name: string): Store<T> {
    const s = this.stores.get(name);
    if (!s) throw new Error(`Unknown collection ${name}`);
    // Each collection holds one document type; the caller names it.
    return s as unknown as Store<T>;
  }

  /** The connection for a read outside a transaction, once it sees only commits. */
  async readConnection(): Promise<DatabaseSync> {
    if (this.closed) throw new Error(`${this.label} is closed`);
    if (this.reader) return this.reader;
    while (this.batch) await this.batch;
    return this.writer;
  }

  transaction<R>(fn: (tx: TxStores) => Promise<R>): Promise<R> {
    if (this.closed) return Promise.reject(new Error(`${this.label} is closed`));
    // Refused before it runs while the disk cannot take writes (see failed()).
    if (this.broken) return Promise.reject(new StoreUnavailableError(this.label));
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      // The first of a turn schedules the batch; the rest of the turn joins it.
      if (!this.draining) this.draining = new Promise(setImmediate).then(() => this.drain());
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const jobs = this.queue;
      this.queue = [];
      this.batch = this.runBatch(jobs);
      await this.batch;
      this.batch = null;
    }
    this.draining = null;
  }

  private exec(sql: string): void {
    this.writer.exec(sql);
  }

  private async runBatch(jobs: Job[]): Promise<void> {
    const outcomes: Outcome[] = [];
    let disk: unknown = null;
    try {
      this.exec("BEGIN IMMEDIATE");
      for (const job of jobs) {
        if (this.broken) {
          outcomes.push({ ok: false, err: new StoreUnavailableError(this.label) });
          continue;
        }
        const tx = new TxView(this);
        this.exec(`SAVEPOINT ${SAVEPOINT}`);
        let outcome: Outcome;
        try {
          outcome = { ok: true, value: await job.fn(tx) };
        } catch (err) {
          outcome = { ok: false, err };
        }
        tx.end();
        // A full disk (SQLite may have rolled everything back already) fails the whole batch.
        if (!outcome.ok && isDiskError(outcome.err)) throw outcome.err;
        if (!this.writer.isTransaction) throw new SqliteBatchLost();
        if (!outcome.ok) this.exec(`ROLLBACK TO ${SAVEPOINT}`);
        this.exec(`RELEASE ${SAVEPOINT}`);
        outcomes.push(outcome);
      }
      this.exec("COMMIT");
    } catch (err) {
      disk = err;
    }
    if (disk) {
      // Nothing of this batch is kept: every caller hears 503, none a success.
      try {
        if (this.writer.isTransaction) this.exec("ROLLBACK");
      } catch {
        // SQLite may have rolled back already.
      }
      const unavailable = isDiskError(disk) || disk instanceof SqliteBatchLost;
      if (unavailable) this.failed(disk as Error);
      else this.opts.logger?.warn({ store: this.label, err: disk }, "Store batch failed");
      const err = unavailable ? new StoreUnavailableError(this.label) : disk;
      for (const job of jobs) job.reject(err);
      return;
    }
    jobs.forEach((job, i) => {
      const o = outcomes[i]!;
      if (o.ok) job.resolve(o.value);
      else job.reject(o.err);
    });
  }

  /** Refuses writes (503) and names the store in readiness until a probe write syncs. */
  private failed(err: Error): void {
    if (this.broken) return;
    this.broken = err;
    // Named by the errno (ENOSPC, EIO), as an operator knows it from the file system.
    const primary = (errcodeOf(err) ?? 0) & 0xff;
    const code = primary === 13 ? "ENOSPC" : primary === 10 ? "EIO" : err.message;
    storeHealth.failed(this.label, code);
    this.opts.logger?.warn({ store: this.label, code }, "Store cannot write: refusing writes");
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    this.probeTimer = setTimeout(() => this.probe(), this.opts.probeMs ?? 1000);
    this.probeTimer.unref();
  }

  /** A small synced write beside the file, then an empty commit: when both pass, writes resume. */
  private probe(): void {
    this.probeTimer = null;
    if (this.closed) return;
    try {
      if (this.opts.filename) {
        // What the WAL holds goes into the database, and the WAL file is emptied.
        this.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        const file = `${this.opts.filename}.probe`;
        const fd = fs.openSync(file, "w");
        try {
          fs.writeSync(fd, Buffer.alloc(64 * 1024, 0x20));
          fs.fdatasyncSync(fd);
        } finally {
          fs.closeSync(fd);
          fs.rmSync(file, { force: true });
        }
      }
      if (!this.batch) {
        this.exec("BEGIN IMMEDIATE");
        this.exec("COMMIT");
      }
    } catch {
      try {
        if (this.writer.isTransaction) this.exec("ROLLBACK");
      } catch {
        // nothing to undo
      }
      this.scheduleProbe();
      return;
    }
    this.broken = null;
    storeHealth.recovered(this.label);
    this.opts.logger?.info({ store: this.label }, "Store writes again");
  }

  /** Waits for the transactions queued, then lets go of the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.draining) await this.draining;
    this.closed = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    storeHealth.recovered(this.label);
    this.reader?.close();
    this.writer.close();
  }
}

/** `DATA_DIR/<service>/<service>.sqlite`: beside the data-dir lock of the service. */
export const sqliteFile = (dataDir: string, service: string): string =>
  path.resolve(dataDir, service, `${service}.sqlite`);
