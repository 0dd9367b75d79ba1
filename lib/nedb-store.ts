import fs from "node:fs";
import Datastore from "@seald-io/nedb";
import {
  DuplicateKeyError,
  type CollectionSpec,
  type Doc,
  type FindOptions,
  type Query,
  type Store,
  type Update,
} from "./store";
import { tuneNedb } from "./nedb-tuning";

/**
 * NeDB collections (the embedded default): in memory, or one append-only file per
 * collection. The same Datastore moleculer-db's MemoryAdapter wraps, opened directly so
 * engines and their tests get a real store without a broker.
 */

/**
 * NeDB appends each write to its file with open/append/close, and its per-collection
 * queue waits for that before the next operation: the disk's round trips, not the CPU,
 * bound a collection's writes. This keeps the file open and lets the queue go on: what
 * a turn of the event loop appends goes out in one write at the end of the turn (group
 * commit), and a Store call answers only once its own bytes are in the file, so an
 * acknowledged write survives a crash of the process just as with NeDB's own appends
 * (neither syncs to disk).
 *
 * The write is synchronous: an append to the page cache takes microseconds, while
 * handing it to the thread pool and back cost the busy event loop more than the write
 * itself (a tenth of the process's CPU under load, at several writes per request).
 */
class AppendLog {
  private fd: number | null = null;
  private failed: Error | null = null;
  private batch: string[] = [];
  /** Resolves once everything appended so far is written. */
  lastWrite: Promise<void> = Promise.resolve();

  constructor(private readonly filename: string) {}

  append(text: string): void {
    if (this.failed) throw this.failed;
    this.batch.push(text);
    if (this.batch.length > 1) return;
    this.lastWrite = new Promise((resolve, reject) =>
      setImmediate(() => this.flush(resolve, reject)),
    );
    this.lastWrite.catch(() => undefined);
  }

  private flush(resolve: () => void, reject: (err: Error) => void): void {
    const text = this.batch.join("");
    this.batch = [];
    if (this.failed) return reject(this.failed);
    try {
      this.fd ??= fs.openSync(this.filename, "a");
      const bytes = Buffer.from(text);
      for (let at = 0; at < bytes.length;) at += fs.writeSync(this.fd, bytes, at);
      resolve();
    } catch (err) {
      // Memory and file now disagree: refuse every later write rather than diverge further.
      this.failed = err as Error;
      reject(this.failed);
    }
  }

  /** Before NeDB rewrites the file (compaction), finish and close; the next append reopens. */
  async close(): Promise<void> {
    await this.lastWrite;
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) fs.closeSync(fd);
  }
}

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

function pipelineAppends<T extends Doc>(db: Datastore<T>, filename: string): AppendLog {
  const log = new AppendLog(filename);
  // NeDB's types leave out its persistence object, whose write hooks this replaces.
  const persistence = (db as unknown as { persistence: NedbPersistence }).persistence;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const model = require("@seald-io/nedb/lib/model") as { serialize(doc: unknown): string };
  // NeDB's serializer calls a replacer for every key (to encode Dates and re-check keys
  // already checked on the way in): several times slower than plain JSON, which gives
  // the same line for a document without Dates.
  const serialize = (d: unknown): string => (hasDate(d) ? model.serialize(d) : JSON.stringify(d));
  persistence.persistNewStateAsync = async docs => {
    if (persistence.inMemoryOnly || docs.length === 0) return;
    log.append(docs.map(d => persistence.afterSerialization(serialize(d)) + "\n").join(""));
  };
  const rewrite = persistence.persistCachedDatabaseAsync.bind(persistence);
  persistence.persistCachedDatabaseAsync = async () => {
    await log.close();
    await rewrite();
  };
  return log;
}

export class NedbStore<T extends Doc> implements Store<T> {
  constructor(
    readonly name: string,
    private readonly db: Datastore<T>,
    private readonly log?: AppendLog,
  ) {}

  /** Waits until this call's writes are in the file (see AppendLog). */
  private async written<R>(result: R): Promise<R> {
    if (this.log) await this.log.lastWrite;
    return result;
  }

  findOne(query: Query): Promise<T | null> {
    return this.db.findOneAsync(query) as Promise<T | null>;
  }

  find(query: Query, opts: FindOptions = {}): Promise<T[]> {
    let cursor = this.db.findAsync(query);
    if (opts.sort) cursor = cursor.sort(opts.sort);
    if (opts.offset) cursor = cursor.skip(opts.offset);
    if (opts.limit) cursor = cursor.limit(opts.limit);
    // NeDB's Cursor is a thenable of the documents, but its types do not say PromiseLike.
    return cursor as unknown as Promise<T[]>;
  }

  count(query: Query): Promise<number> {
    // countAsync returns a Cursor typed as a number cursor; awaiting it gives the count.
    return this.db.countAsync(query) as unknown as Promise<number>;
  }

  async insert(doc: T): Promise<T> {
    try {
      return await this.written((await this.db.insertAsync(doc)) as T);
    } catch (err) {
      if ((err as { errorType?: string }).errorType === "uniqueViolated")
        throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  async update(query: Query, update: Update): Promise<number> {
    const res = await this.db.updateAsync(query, update, { multi: true });
    return this.written(res.numAffected);
  }

  async updateOne(query: Query, update: Update): Promise<T | null> {
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
    return this.written(await this.db.removeAsync(query, { multi: true }));
  }

  /** Makes sure the file has everything and stops compacting: the process is stopping. */
  async close(): Promise<void> {
    this.db.stopAutocompaction();
    await this.log?.close();
  }
}

/** Opens one collection: `filename` for a file, none for memory; indexes as `spec` says. */
export async function openNedbStore<T extends Doc = Doc>(
  name: string,
  spec: CollectionSpec,
  filename?: string,
): Promise<NedbStore<T>> {
  tuneNedb();
  const db = new Datastore<T>(filename ? { filename } : {});
  await db.loadDatabaseAsync();
  const log = filename ? pipelineAppends(db, filename) : undefined;
  for (const f of spec.unique ?? []) await db.ensureIndexAsync({ fieldName: f, unique: true });
  for (const f of spec.indexes ?? []) await db.ensureIndexAsync({ fieldName: f });
  // Compact the append-only file now and then so restarts stay fast.
  if (filename) db.setAutocompactionInterval(10 * 60 * 1000);
  return new NedbStore<T>(name, db, log);
}
