import type { Logger, ServiceBroker } from "moleculer";
import { DuplicateKeyError } from "../store";
import type { CollectionSpec, Doc, FindOptions, Query, Store, Update } from "../store";

/**
 * MongoDB collections through moleculer-db-adapter-mongo, when MONGO_URI is set: one
 * database per service (services own their data), indexes as the collection spec says.
 */

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
  insertMany(docs: unknown[]): Promise<unknown>;
  updateMany(query: Query, update: Update): Promise<{ matchedCount: number }>;
  findOneAndUpdate(query: Query, update: Update, opts: object): Promise<{ value: unknown }>;
  deleteMany(query: Query): Promise<{ deletedCount: number }>;
  createIndex(spec: Record<string, 1>, opts: object): Promise<unknown>;
}
type MongoCursorLike = ReturnType<MongoCollection["find"]>;

const isDuplicate = (err: unknown): boolean => (err as { code?: number }).code === 11000;

export class MongoStore<T extends Doc> implements Store<T> {
  constructor(
    readonly name: string,
    private readonly col: MongoCollection,
    private readonly disconnect: () => Promise<unknown> = async () => undefined,
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

  async insertMany(docs: T[]): Promise<T[]> {
    try {
      // Ordered: it stops at a duplicate, having written the ones before it.
      if (docs.length > 0) await this.col.insertMany(docs);
      return docs;
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

  async close(): Promise<void> {
    await this.disconnect();
  }
}

interface MongoAdapter {
  collection: MongoCollection;
  init(broker: ServiceBroker, service: object): void;
  connect(): Promise<unknown>;
  disconnect(): Promise<unknown>;
}

/** Opens one collection of `service`'s database, creating its indexes. */
export async function openMongoStore<T extends Doc = Doc>(
  uri: string,
  service: string,
  name: string,
  spec: CollectionSpec,
  host: { broker: ServiceBroker; logger: Logger },
): Promise<MongoStore<T>> {
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
  await adapter.connect();
  for (const f of spec.unique ?? [])
    await adapter.collection.createIndex({ [f]: 1 }, { unique: true });
  for (const f of spec.indexes ?? []) await adapter.collection.createIndex({ [f]: 1 }, {});
  for (const f of spec.sparse ?? [])
    await adapter.collection.createIndex({ [f]: 1 }, { sparse: true });
  for (const f of spec.uniqueSparse ?? [])
    await adapter.collection.createIndex({ [f]: 1 }, { unique: true, sparse: true });
  return new MongoStore<T>(name, adapter.collection, () => adapter.disconnect());
}

/** `mongodb://host/mintmesh` → database `mintmesh-<service>`: services own their data. */
export function mongoDbName(uri: string, service: string): string {
  const base = new URL(uri).pathname.replace(/^\//, "") || "mintmesh";
  return `${base}-${service}`;
}
