import fs from "node:fs";
import path from "node:path";
import Datastore from "@seald-io/nedb";
import { DuplicateKeyError } from "../store";
import type { CollectionSpec, Doc, FindOptions, Query, Store, Update } from "../store";
import { tuneNedb } from "./tuning";
import { AppendLog, corruptLine, cutTornTail } from "./append-log";
import { StoreUnavailableError, storeHealth } from "../health";

/**
 * NeDB collections (the embedded default): in memory, or one append-only file per
 * collection. The same Datastore moleculer-db's MemoryAdapter wraps, opened directly so
 * engines and their tests get a real store without a broker.
 */

interface NedbPersistence {
  inMemoryOnly: boolean;
  afterSerialization(s: string): string;
  persistNewStateAsync(docs: unknown[]): Promise<void>;
  persistCachedDatabaseAsync(): Promise<void>;
}

/** Whether a value holds a Date anywhere (NeDB writes those as `{"$$date": ms}`). */
function hasDate(v: unknown): boolean {
  if (v === null || typeof v !== "object") return false;
  if (v instanceof Date) return true;
  if (Array.isArray(v)) return v.some(hasDate);
  for (const k in v) if (hasDate((v as Record<string, unknown>)[k])) return true;
  return false;
}

/** NeDB's types leave out its persistence object, whose write hooks the store replaces. */
const persistenceOf = <T extends Doc>(db: Datastore<T>): NedbPersistence =>
  (db as unknown as { persistence: NedbPersistence }).persistence;

/** Likewise its indexes by field, which the store rewrites and reconciles with its spec. */
const indexesOf = <T extends Doc>(
  db: Datastore<T>,
): Record<string, { unique: boolean; sparse: boolean }> =>
  (db as unknown as { indexes: Record<string, { unique: boolean; sparse: boolean }> }).indexes;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const model = require("@seald-io/nedb/lib/model") as { serialize(doc: unknown): string };
/**
 * NeDB's serializer calls a replacer for every key (to encode Dates and re-check keys
 * already checked on the way in): several times slower than plain JSON, which gives the
 * same line for a document without Dates.
 */
const serialize = (d: unknown): string => (hasDate(d) ? model.serialize(d) : JSON.stringify(d));

/** Documents serialized per slice of a rewrite, between which other work runs. */
const REWRITE_SLICE = 2000;

function writeAll(fd: number, text: string): void {
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length;) at += fs.writeSync(fd, bytes, at);
}

/**
 * The whole file written anew from memory (NeDB's compaction, also at every start): to a
 * temporary file, synced, then renamed over the old one, as NeDB does. NeDB serializes
 * every document in one go, which held the event loop for ~270 ms per 100k documents
 * (and missed heartbeats beyond); here it goes in slices with the event loop free between
 * them. NeDB's queue holds this collection's operations meanwhile, so memory is still.
 */
async function rewriteInSlices<T extends Doc>(db: Datastore<T>, filename: string): Promise<void> {
  const persistence = persistenceOf(db);
  const docs = db.getAllData();
  const indexes = indexesOf(db);
  const tmp = `${filename}~`;
  const fd = fs.openSync(tmp, "w");
  try {
    for (let i = 0; i < docs.length; i += REWRITE_SLICE) {
      const slice = docs.slice(i, i + REWRITE_SLICE);
      writeAll(fd, slice.map(d => persistence.afterSerialization(serialize(d)) + "\n").join(""));
      await new Promise(resolve => setImmediate(resolve));
    }
    for (const [fieldName, index] of Object.entries(indexes)) {
      if (fieldName === "_id") continue; // NeDB makes that one itself
      const created = { fieldName, unique: index.unique, sparse: index.sparse };
      writeAll(
        fd,
        persistence.afterSerialization(model.serialize({ $$indexCreated: created })) + "\n",
      );
    }
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, filename);
  const dir = fs.openSync(path.dirname(filename), "r");
  try {
    fs.fsyncSync(dir); // the rename itself survives a crash
  } finally {
    fs.closeSync(dir);
  }
}

function pipelineAppends<T extends Doc>(db: Datastore<T>, log: AppendLog, filename: string): void {
  const persistence = persistenceOf(db);
  persistence.persistNewStateAsync = async docs => {
    if (persistence.inMemoryOnly || docs.length === 0) return;
    log.append(docs.map(d => persistence.afterSerialization(serialize(d)) + "\n").join(""));
  };
  persistence.persistCachedDatabaseAsync = async () => {
    await log.close();
    await rewriteInSlices(db, filename);
  };
}

export interface NedbStoreOptions {
  /** The collection's file; none: in memory. */
  filename?: string;
  /** fdatasync before a write is acknowledged (default true). */
  sync?: boolean;
  /** Named in readiness and logs, e.g. "tokens/journal". */
  label?: string;
  /** How often a store that could not write tries the disk again (ms). */
  probeMs?: number;
  logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/**
 * One NeDB collection as a Store. When its file cannot be written (ENOSPC, EIO), NeDB's
 * memory already holds what the file lacks (it changes memory before it persists): the
 * store then refuses writes with 503, reads the file back into memory, and tries the
 * disk every `probeMs`; once a probe write syncs, writes resume. No restart needed.
 */
export class NedbStore<T extends Doc> implements Store<T> {
  private broken: Error | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private readonly label: string;
  /** Set while the file is read back: NeDB's load would rewrite it, which a full disk refuses. */
  private reloading = false;
  /** The file could not be read back: memory cannot be trusted for reads either. */
  private dead = false;

  constructor(
    readonly name: string,
    private readonly db: Datastore<T>,
    private readonly opts: NedbStoreOptions = {},
  ) {
    this.label = opts.label ?? name;
    if (!opts.filename) return;
    this.log = new AppendLog(opts.filename, opts.sync ?? true, err => this.failed(err));
    pipelineAppends(db, this.log, opts.filename);
    const persistence = persistenceOf(db);
    const rewrite = persistence.persistCachedDatabaseAsync.bind(persistence);
    persistence.persistCachedDatabaseAsync = async () => {
      if (!this.reloading) await rewrite();
    };
  }

  private readonly log?: AppendLog;

  /** Waits until this call's writes are on disk (see AppendLog). */
  private async written<R>(result: R): Promise<R> {
    if (this.log) {
      try {
        await this.log.lastWrite;
      } catch {
        throw new StoreUnavailableError(this.label);
      }
    }
    return result;
  }

  /** Refuses a write before NeDB changes its memory, while the file cannot take it. */
  private writable(): void {
    if (this.broken || this.dead) throw new StoreUnavailableError(this.label);
  }

  private failed(err: Error): void {
    if (this.broken) return;
    this.broken = err;
    const code = (err as NodeJS.ErrnoException).code ?? err.message;
    storeHealth.failed(this.label, code);
    this.opts.logger?.warn({ store: this.label, code }, "Store cannot write: refusing writes");
    // Memory back to what the file holds; NeDB's queue runs it after the writes in flight.
    this.reloading = true;
    try {
      cutTornTail(this.opts.filename!);
    } catch {
      // A torn tail refuses the reload below, which keeps the store closed.
    }
    this.db
      .loadDatabaseAsync()
      .then(() => {
        this.probeTimer = setTimeout(() => this.probe(), this.opts.probeMs ?? 1000);
        this.probeTimer.unref();
      })
      .catch(e => {
        // Memory may be empty now: serving it would lose data. Only a restart reopens it.
        this.dead = true;
        this.opts.logger?.warn(
          { store: this.label, err: e },
          "Store reload failed: restart the node",
        );
      })
      .finally(() => {
        this.reloading = false;
      });
  }

  /** A small synced write beside the file: when it succeeds, the disk takes writes again. */
  private probe(): void {
    this.probeTimer = null;
    const file = `${this.opts.filename}.probe`;
    try {
      const fd = fs.openSync(file, "w");
      try {
        fs.writeSync(fd, Buffer.alloc(4096, 0x20));
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
        fs.rmSync(file, { force: true });
      }
      cutTornTail(this.opts.filename!);
    } catch {
      this.probeTimer = setTimeout(() => this.probe(), this.opts.probeMs ?? 1000);
      this.probeTimer.unref();
      return;
    }
    this.broken = null;
    storeHealth.recovered(this.label);
    this.opts.logger?.info({ store: this.label }, "Store writes again");
  }

  /** Reads answer from memory, unless it could not be read back after a failure. */
  private readable(): void {
    if (this.dead) throw new StoreUnavailableError(this.label);
  }

  findOne(query: Query): Promise<T | null> {
    this.readable();
    return this.db.findOneAsync(query) as Promise<T | null>;
  }

  find(query: Query, opts: FindOptions = {}): Promise<T[]> {
    this.readable();
    let cursor = this.db.findAsync(query);
    if (opts.sort) cursor = cursor.sort(opts.sort);
    if (opts.offset) cursor = cursor.skip(opts.offset);
    if (opts.limit) cursor = cursor.limit(opts.limit);
    // NeDB's Cursor is a thenable of the documents, but its types do not say PromiseLike.
    return cursor as unknown as Promise<T[]>;
  }

  count(query: Query): Promise<number> {
    this.readable();
    // countAsync returns a Cursor typed as a number cursor; awaiting it gives the count.
    return this.db.countAsync(query) as unknown as Promise<number>;
  }

  async insert(doc: T): Promise<T> {
    this.writable();
    try {
      return await this.written((await this.db.insertAsync(doc)) as T);
    } catch (err) {
      if ((err as { errorType?: string }).errorType === "uniqueViolated")
        throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  async insertMany(docs: T[]): Promise<T[]> {
    this.writable();
    try {
      // NeDB inserts an array as one operation: all of it, or none on a unique violation.
      return await this.written((await this.db.insertAsync(docs)) as T[]);
    } catch (err) {
      if ((err as { errorType?: string }).errorType === "uniqueViolated")
        throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  async update(query: Query, update: Update): Promise<number> {
    this.writable();
    const res = await this.db.updateAsync(query, update, { multi: true });
    return this.written(res.numAffected);
  }

  async updateOne(query: Query, update: Update): Promise<T | null> {
    this.writable();
    try {
      const res = await this.db.updateAsync(query, update, {
        multi: false,
        returnUpdatedDocs: true,
      });
      return this.written(
        // With multi: false, NeDB's union type is the one updated document.
        res.numAffected > 0 ? ((res.affectedDocuments as unknown as T) ?? null) : null,
      );
    } catch (err) {
      if ((err as { errorType?: string }).errorType === "uniqueViolated")
        throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  async remove(query: Query): Promise<number> {
    this.writable();
    return this.written(await this.db.removeAsync(query, { multi: true }));
  }

  /** Rewrites the file with what memory holds (NeDB's compaction), writes going on meanwhile. */
  async compact(): Promise<void> {
    await this.db.compactDatafileAsync();
  }

  /** Makes sure the file has everything and stops compacting: the process is stopping. */
  async close(): Promise<void> {
    this.db.stopAutocompaction();
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    storeHealth.recovered(this.label);
    await this.log?.close();
  }
}

/**
 * Opens one collection: a file when `opts.filename` is set, memory otherwise; indexes as
 * `spec` says. An incomplete last line (a crash mid-append) is cut off and logged; a
 * corrupt line anywhere else refuses the start, naming the file and the line.
 */
export async function openNedbStore<T extends Doc = Doc>(
  name: string,
  spec: CollectionSpec,
  opts: NedbStoreOptions = {},
): Promise<NedbStore<T>> {
  tuneNedb();
  const { filename } = opts;
  if (filename) {
    const cut = cutTornTail(filename);
    if (cut > 0)
      opts.logger?.warn({ file: filename, bytes: cut }, "Cut an incomplete last line off");
  }
  // Threshold 0: any corrupt line refuses the start (the torn tail is already gone).
  const db = new Datastore<T>(filename ? { filename, corruptAlertThreshold: 0 } : {});
  // Before the load: its compaction already goes through the store's rewrite.
  const store = new NedbStore<T>(name, db, opts);
  try {
    await db.loadDatabaseAsync();
  } catch (err) {
    const line = filename && corruptLine(filename);
    if (line) throw new Error(`${filename}:${line} is corrupt; refusing to start on it`);
    throw err;
  }
  // The spec decides: an index a file brought along and the spec no longer names goes
  // (a low-cardinality one made every removal cost O(its documents)).
  const named = new Set(
    [spec.unique, spec.indexes, spec.sparse, spec.uniqueSparse].flatMap(fields => fields ?? []),
  );
  const loaded = Object.keys(indexesOf(db));
  for (const f of loaded) if (f !== "_id" && !named.has(f)) await db.removeIndexAsync(f);
  for (const f of spec.unique ?? []) await db.ensureIndexAsync({ fieldName: f, unique: true });
  for (const f of spec.indexes ?? []) await db.ensureIndexAsync({ fieldName: f });
  for (const f of spec.sparse ?? []) await db.ensureIndexAsync({ fieldName: f, sparse: true });
  for (const f of spec.uniqueSparse ?? [])
    await db.ensureIndexAsync({ fieldName: f, unique: true, sparse: true });
  // Compact the append-only file now and then so restarts stay fast.
  if (filename) db.setAutocompactionInterval(10 * 60 * 1000);
  return store;
}
