import type { Logger, ServiceBroker } from "moleculer";
import { DuplicateKeyError } from "../store";
import type {
  CollectionSpec,
  Database,
  Doc,
  FindOptions,
  Query,
  Store,
  TxStores,
  Update,
} from "../store";

/**
 * MongoDB collections through moleculer-db-adapter-mongo, when MONGO_URI is set: one
 * database per service (services own their data), indexes as the collection spec says.
 */

/** Options every call takes: the session of the transaction it belongs to, if any. */
type CallOpts = { session?: MongoSession };

/** The parts of the mongodb driver's Collection that the store uses (driver 3.x ships no types). */
interface MongoCollection {
  findOne(query: Query, opts?: CallOpts): Promise<unknown>;
  find(
    query: Query,
    opts?: CallOpts,
  ): {
    sort(s: Record<string, 1 | -1>): MongoCursorLike;
    skip(n: number): MongoCursorLike;
    limit(n: number): MongoCursorLike;
    toArray(): Promise<unknown[]>;
  };
  countDocuments(query: Query, opts?: CallOpts): Promise<number>;
  insertOne(doc: unknown, opts?: CallOpts): Promise<unknown>;
  insertMany(docs: unknown[], opts?: CallOpts): Promise<unknown>;
  updateMany(query: Query, update: Update, opts?: CallOpts): Promise<{ matchedCount: number }>;
  findOneAndUpdate(query: Query, update: Update, opts: object): Promise<{ value: unknown }>;
  deleteMany(query: Query, opts?: CallOpts): Promise<{ deletedCount: number }>;
  createIndex(spec: Record<string, 1>, opts: object): Promise<unknown>;
}

interface MongoSession {
  /** Runs fn, retrying it on a transient error and the commit on an unknown result. */
  withTransaction(fn: () => Promise<unknown>, opts?: object): Promise<unknown>;
  endSession(): Promise<void> | void;
}

interface MongoDb {
  collection(name: string): MongoCollection;
  admin(): { command(cmd: object): Promise<{ setName?: string }> };
}

interface MongoClient {
  startSession(): MongoSession;
}
type MongoCursorLike = ReturnType<MongoCollection["find"]>;

const isDuplicate = (err: unknown): boolean => (err as { code?: number }).code === 11000;

export class MongoStore<T extends Doc> implements Store<T> {
  constructor(
    readonly name: string,
    private readonly col: MongoCollection,
    private readonly disconnect: () => Promise<unknown> = async () => undefined,
    /** Set for the stores of a transaction: every call joins its session. */
    private readonly session?: MongoSession,
  ) {}

  private get opts(): CallOpts {
    return this.session ? { session: this.session } : {};
  }

  findOne(query: Query): Promise<T | null> {
    return this.col.findOne(query, this.opts) as Promise<T | null>;
  }

  find(query: Query, opts: FindOptions = {}): Promise<T[]> {
    let cursor = this.col.find(query, this.opts);
    if (opts.sort) cursor = cursor.sort(opts.sort);
    if (opts.offset) cursor = cursor.skip(opts.offset);
    if (opts.limit) cursor = cursor.limit(opts.limit);
    return cursor.toArray() as Promise<T[]>;
  }

  count(query: Query): Promise<number> {
    return this.col.countDocuments(query, this.opts);
  }

  async insert(doc: T): Promise<T> {
    try {
      await this.col.insertOne(doc, this.opts);
      return doc;
    } catch (err) {
      if (isDuplicate(err)) throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  async insertMany(docs: T[]): Promise<T[]> {
    try {
      // Ordered: it stops at a duplicate, having written the ones before it.
      if (docs.length > 0) await this.col.insertMany(docs, this.opts);
      return docs;
    } catch (err) {
      if (isDuplicate(err)) throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  async update(query: Query, update: Update): Promise<number> {
    return (await this.col.updateMany(query, update, this.opts)).matchedCount;
  }

  async updateOne(query: Query, update: Update): Promise<T | null> {
    try {
      const res = await this.col.findOneAndUpdate(query, update, {
        returnOriginal: false,
        ...this.opts,
      });
      return (res.value as T) ?? null;
    } catch (err) {
      if (isDuplicate(err)) throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  async remove(query: Query): Promise<number> {
    return (await this.col.deleteMany(query, this.opts)).deletedCount;
  }

  async close(): Promise<void> {
    await this.disconnect();
  }
}

interface MongoAdapter {
  collection: MongoCollection;
  client: MongoClient;
  db: MongoDb;
  init(broker: ServiceBroker, service: object): void;
  connect(): Promise<unknown>;
  disconnect(): Promise<unknown>;
}

/** An adapter of `service`'s database for collection `name`, not yet connected. */
function newAdapter(
  uri: string,
  service: string,
  name: string,
  host: { broker: ServiceBroker; logger: Logger },
): MongoAdapter {
  // Loaded only when used: the embedded mode never needs the mongodb driver.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Adapter = require("moleculer-db-adapter-mongo") as new (
    uri: string,
    opts: object,
    db: string,
  ) => MongoAdapter;
  // Acknowledged means durable (docs/architecture.md rule 9): on a majority of the replica set, journaled.
  const options = { useUnifiedTopology: true, w: "majority", j: true };
  const adapter = new Adapter(uri, options, mongoDbName(uri, service));
  // The adapter reads only the collection name and the logger of the service it serves.
  adapter.init(host.broker, { schema: { collection: name }, logger: host.logger });
  return adapter;
}

/** A compound index's key, its fields in the order given. */
const compoundKey = (fields: string[]): Record<string, 1> =>
  Object.fromEntries(fields.map(f => [f, 1 as const]));

/** Opens one collection of `service`'s database, creating its indexes. */
export async function openMongoStore<T extends Doc = Doc>(
  uri: string,
  service: string,
  name: string,
  spec: CollectionSpec,
  host: { broker: ServiceBroker; logger: Logger },
): Promise<MongoStore<T>> {
  const adapter = newAdapter(uri, service, name, host);
  await adapter.connect();
  for (const f of spec.unique ?? [])
    await adapter.collection.createIndex({ [f]: 1 }, { unique: true });
  for (const f of spec.indexes ?? []) await adapter.collection.createIndex({ [f]: 1 }, {});
  for (const f of spec.sparse ?? [])
    await adapter.collection.createIndex({ [f]: 1 }, { sparse: true });
  for (const f of spec.uniqueSparse ?? [])
    await adapter.collection.createIndex({ [f]: 1 }, { unique: true, sparse: true });
  for (const fields of spec.compound ?? [])
    await adapter.collection.createIndex(compoundKey(fields), {});
  return new MongoStore<T>(name, adapter.collection, () => adapter.disconnect());
}

/**
 * A service's collections on one connection, with transactions: each runs in a session's
 * withTransaction (all or nothing, snapshot reads, retried by the driver on a transient
 * conflict), its stores bound to the session. MongoDB has transactions only on a replica
 * set (or a sharded cluster): a standalone server refuses the start.
 */
export class MongoDatabase implements Database {
  constructor(
    private readonly client: MongoClient,
    private readonly cols: Record<string, MongoCollection>,
    private readonly stores: Record<string, MongoStore<Doc>>,
    private readonly disconnect: () => Promise<unknown>,
  ) {}

  store<T extends Doc>(name: string): Store<T> {
    const s = this.stores[name];
    if (!s) throw new Error(`Unknown collection ${name}`);
    // Each collection holds one document type; the caller names it.
    return s as unknown as Store<T>;
  }

  async transaction<R>(fn: (tx: TxStores) => Promise<R>): Promise<R> {
    const session = this.client.startSession();
    const cols = this.cols;
    const tx: TxStores = {
      store<T extends Doc>(name: string): Store<T> {
        const col = cols[name];
        if (!col) throw new Error(`Unknown collection ${name}`);
        return new MongoStore<T>(name, col, async () => undefined, session);
      },
    };
    try {
      let result: R | undefined;
      // The driver may run fn more than once (a write conflict): the last run's result counts.
      await session.withTransaction(
        async () => {
          result = await fn(tx);
        },
        { readConcern: { level: "snapshot" }, writeConcern: { w: "majority", j: true } },
      );
      return result as R;
    } finally {
      await session.endSession();
    }
  }

  async close(): Promise<void> {
    await this.disconnect();
  }
}

/** Opens `service`'s database with every collection of `specs`; refuses a server that is not a replica set. */
export async function openMongoDatabase(
  uri: string,
  service: string,
  specs: Record<string, CollectionSpec>,
  host: { broker: ServiceBroker; logger: Logger },
): Promise<MongoDatabase> {
  const names = Object.keys(specs);
  const adapter = newAdapter(uri, service, names[0] ?? "_", host);
  await adapter.connect();
  const hello = await adapter.db.admin().command({ hello: 1 });
  if (!hello.setName) {
    await adapter.disconnect();
    throw new Error(
      `MONGO_URI points at a standalone MongoDB server: transactions need a replica set ` +
        `(start mongod with --replSet, and rs.initiate() it; a one-node set is enough)`,
    );
  }
  const cols: Record<string, MongoCollection> = {};
  const stores: Record<string, MongoStore<Doc>> = {};
  for (const name of names) {
    const col = adapter.db.collection(name);
    const spec = specs[name]!;
    for (const f of spec.unique ?? []) await col.createIndex({ [f]: 1 }, { unique: true });
    for (const f of spec.indexes ?? []) await col.createIndex({ [f]: 1 }, {});
    for (const f of spec.sparse ?? []) await col.createIndex({ [f]: 1 }, { sparse: true });
    for (const f of spec.uniqueSparse ?? [])
      await col.createIndex({ [f]: 1 }, { unique: true, sparse: true });
    for (const fields of spec.compound ?? []) await col.createIndex(compoundKey(fields), {});
    cols[name] = col;
    stores[name] = new MongoStore<Doc>(name, col);
  }
  return new MongoDatabase(adapter.client, cols, stores, () => adapter.disconnect());
}

/** `mongodb://host/mintmesh` → database `mintmesh-<service>`: services own their data. */
export function mongoDbName(uri: string, service: string): string {
  const base = new URL(uri).pathname.replace(/^\//, "") || "mintmesh";
  return `${base}-${service}`;
}
