import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { MemoryAdapter, type DbAdapter } from "moleculer-db";
import type Datastore from "@seald-io/nedb";
import { envStr } from "../lib/env";
import { tuneNedb } from "../lib/nedb-tuning";

/**
 * Storage for a service, chosen by env (DESIGN.md "data"):
 *  - MONGO_URI set: MongoDB, one database per service (`<db>-<service>`);
 *  - DATA_DIR=":memory:": NeDB in memory (tests);
 *  - otherwise NeDB files under DATA_DIR/<service>/<collection>.db.
 * A service owns several collections; each is a Store with the few operations the
 * domain needs, including conditional updates (compare-and-set) and unique indexes.
 */

export type Doc = { _id: string } & Record<string, unknown>;
export type Query = Record<string, unknown>;
export type Update = Record<string, unknown>;

export interface FindOptions {
  sort?: Record<string, 1 | -1>;
  limit?: number;
  offset?: number;
}

export interface CollectionSpec {
  /** Fields with a unique index: a second insert with the same value fails with DuplicateKeyError. */
  unique?: string[];
  /** Fields with a plain index. */
  indexes?: string[];
}

export class DuplicateKeyError extends Error {
  constructor(readonly collection: string) {
    super(`Duplicate key in ${collection}`);
    this.name = "DuplicateKeyError";
  }
}

export interface Store<T extends Doc = Doc> {
  readonly name: string;
  findOne(query: Query): Promise<T | null>;
  find(query: Query, opts?: FindOptions): Promise<T[]>;
  count(query: Query): Promise<number>;
  insert(doc: T): Promise<T>;
  /** Applies `update` ($set, $inc, …) to every match; resolves to how many documents matched. */
  update(query: Query, update: Update): Promise<number>;
  /** Applies `update` to the first match (a compare-and-set when `query` pins a version); the new document or null. */
  updateOne(query: Query, update: Update): Promise<T | null>;
  remove(query: Query): Promise<number>;
}

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

function pipelineAppends(db: Datastore<Doc>, filename: string): AppendLog {
  const log = new AppendLog(filename);
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

class NedbStore<T extends Doc> implements Store<T> {
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
    return cursor as unknown as Promise<T[]>;
  }

  count(query: Query): Promise<number> {
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

  /** Makes sure the file has everything, e.g. before the process stops. */
  async flush(): Promise<void> {
    await this.log?.close();
  }
}

/** The parts of the mongodb driver's Collection that the store uses (driver 3.x ships no types). */
interface MongoCollection {
  findOne(query: Query): Promise<unknown>;
  find(query: Query): {
    sort(s: Record<string, 1 | -1>): MongoCursorLike;
    skip(n: number): MongoCursorLike;
    limit(n: number): MongoCursorLike;
    toArray(): Promise<unknown[]>;
  };
  countDocuments(query: Query): Promise<number>;
  insertOne(doc: unknown): Promise<unknown>;
  updateMany(query: Query, update: Update): Promise<{ matchedCount: number }>;
  findOneAndUpdate(query: Query, update: Update, opts: object): Promise<{ value: unknown }>;
  deleteMany(query: Query): Promise<{ deletedCount: number }>;
  createIndex(spec: Record<string, 1>, opts: object): Promise<unknown>;
}
type MongoCursorLike = ReturnType<MongoCollection["find"]>;

const isDuplicate = (err: unknown): boolean => (err as { code?: number }).code === 11000;

class MongoStore<T extends Doc> implements Store<T> {
  constructor(
    readonly name: string,
    private readonly col: MongoCollection,
  ) {}

  findOne(query: Query): Promise<T | null> {
    return this.col.findOne(query) as Promise<T | null>;
  }

  find(query: Query, opts: FindOptions = {}): Promise<T[]> {
    let cursor = this.col.find(query);
    if (opts.sort) cursor = cursor.sort(opts.sort);
    if (opts.offset) cursor = cursor.skip(opts.offset);
    if (opts.limit) cursor = cursor.limit(opts.limit);
    return cursor.toArray() as Promise<T[]>;
  }

  count(query: Query): Promise<number> {
    return this.col.countDocuments(query);
  }

  async insert(doc: T): Promise<T> {
    try {
      await this.col.insertOne(doc);
      return doc;
    } catch (err) {
      if (isDuplicate(err)) throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  async update(query: Query, update: Update): Promise<number> {
    return (await this.col.updateMany(query, update)).matchedCount;
  }

  async updateOne(query: Query, update: Update): Promise<T | null> {
    try {
      const res = await this.col.findOneAndUpdate(query, update, { returnOriginal: false });
      return (res.value as T) ?? null;
    } catch (err) {
      if (isDuplicate(err)) throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  async remove(query: Query): Promise<number> {
    return (await this.col.deleteMany(query)).deletedCount;
  }
}

/** `mongodb://host/mintmesh` → database `mintmesh-<service>`: services own their data. */
export function mongoDbName(uri: string, service: string): string {
  const base = new URL(uri).pathname.replace(/^\//, "") || "mintmesh";
  return `${base}-${service}`;
}

/**
 * NeDB keeps a whole collection in one process's memory: two processes writing the
 * same files would overwrite each other. A lock file per service directory makes the
 * second process refuse to start instead.
 */
function lockDataDir(dir: string, service: string): () => void {
  const file = path.join(dir, "LOCK");
  const mine = `${process.pid}@${os.hostname()}`;
  for (;;) {
    try {
      fs.writeFileSync(file, mine, { flag: "wx" });
      return () => {
        if (fs.existsSync(file) && fs.readFileSync(file, "utf8") === mine) fs.unlinkSync(file);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const [pidText, host] = fs.readFileSync(file, "utf8").split("@");
      const pid = Number(pidText);
      if (host === os.hostname() && pid !== process.pid && isAlive(pid)) {
        throw new Error(
          `The ${service} data in ${dir} is in use by process ${pid}. NeDB files are single-writer: ` +
            `run one ${service} process per DATA_DIR, or set MONGO_URI to run replicas on MongoDB.`,
        );
      }
      fs.unlinkSync(file); // stale: its owner died without cleaning up
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface DbMethods {
  store<T extends Doc>(name: string): Store<T>;
}

export interface DbVars {
  stores: Record<string, Store>;
  adapters: DbAdapter[];
  releaseLock?: () => void;
}

/** What a service using DbMixin adds to `this`. */
export type DbThis = DbMethods & DbVars;

export function DbMixin(collections: Record<string, CollectionSpec>): Partial<ServiceSchema> {
  tuneNedb();
  const schema: Partial<ServiceSchema<ServiceSettingSchema, DbMethods, DbVars>> = {
    methods: {
      store<T extends Doc>(name: string): Store<T> {
        const s = this.stores[name];
        if (!s) throw new Error(`Unknown collection ${name}`);
        return s as unknown as Store<T>;
      },
    },

    async started() {
      this.stores = {};
      this.adapters = [];
      const mongoUri = envStr("MONGO_URI");
      const dataDir = envStr("DATA_DIR", "./data");
      const service = this.name;

      if (!mongoUri && dataDir !== ":memory:") {
        const dir = path.resolve(dataDir, service);
        fs.mkdirSync(dir, { recursive: true });
        this.releaseLock = lockDataDir(dir, service);
      }

      for (const [name, spec] of Object.entries(collections)) {
        if (mongoUri) {
          // Loaded only when used: the embedded mode never needs the mongodb driver.
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          const MongoAdapter = require("moleculer-db-adapter-mongo") as new (
            uri: string,
            opts: object,
            db: string,
          ) => DbAdapter & { collection: MongoCollection };
          const adapter = new MongoAdapter(
            mongoUri,
            { useUnifiedTopology: true },
            mongoDbName(mongoUri, service),
          );
          adapter.init(this.broker, {
            schema: { collection: name },
            logger: this.logger,
          } as unknown as Service);
          await adapter.connect();
          for (const f of spec.unique ?? [])
            await adapter.collection.createIndex({ [f]: 1 }, { unique: true });
          for (const f of spec.indexes ?? []) await adapter.collection.createIndex({ [f]: 1 }, {});
          this.adapters.push(adapter);
          this.stores[name] = new MongoStore(name, adapter.collection);
        } else {
          const filename =
            dataDir === ":memory:" ? undefined : path.resolve(dataDir, service, `${name}.db`);
          const adapter = new MemoryAdapter(filename ? { filename } : {});
          adapter.init(this.broker, this);
          await adapter.connect();
          const db = (adapter as unknown as { db: Datastore<Doc> }).db;
          const log = filename ? pipelineAppends(db, filename) : undefined;
          for (const f of spec.unique ?? [])
            await db.ensureIndexAsync({ fieldName: f, unique: true });
          for (const f of spec.indexes ?? []) await db.ensureIndexAsync({ fieldName: f });
          // Compact the append-only file now and then so restarts stay fast.
          if (filename) db.setAutocompactionInterval(10 * 60 * 1000);
          this.adapters.push(adapter);
          this.stores[name] = new NedbStore(name, db, log);
        }
      }
    },

    async stopped() {
      for (const store of Object.values(this.stores ?? {})) {
        if (store instanceof NedbStore) await store.flush();
      }
      for (const a of this.adapters ?? []) await a.disconnect();
      this.releaseLock?.();
    },
  };
  return schema as Partial<ServiceSchema>;
}
