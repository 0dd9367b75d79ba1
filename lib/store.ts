/**
 * The storage contract every engine and service works against (DESIGN.md "data"): a
 * collection with the few operations the domain needs, including conditional updates
 * (compare-and-set) and unique indexes. NeDB (lib/nedb-store.ts) and MongoDB
 * (lib/mongo-store.ts) implement it; mixins/db.mixin.ts picks one by env. Engines in
 * lib/ take Stores in their constructors and never see a broker.
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
  /**
   * Fields with a sparse index: only documents that have the field are in it. For a flag
   * few documents carry (a transfer still pending): cheap to keep however many do not.
   */
  sparse?: string[];
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
  /** Finishes pending writes and lets go of the connection or file. */
  close(): Promise<void>;
}

/**
 * Inserts `doc` unless a document with its unique key exists already. True when this
 * call inserted it, false when one was there (a retry, a recovery, or a racing writer):
 * what the many "create once" steps of the domain need.
 */
export async function insertIfAbsent<T extends Doc>(store: Store<T>, doc: T): Promise<boolean> {
  try {
    await store.insert(doc);
    return true;
  } catch (err) {
    if (err instanceof DuplicateKeyError) return false;
    throw err;
  }
}
