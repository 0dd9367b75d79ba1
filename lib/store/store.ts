/**
 * The storage contract every engine and service works against (docs/architecture.md): a
 * collection with the few operations the domain needs, including conditional updates
 * (compare-and-set) and unique indexes, and a Database of a service's collections with
 * transactions. SQLite (lib/store/sqlite/, embedded) and MongoDB (lib/store/mongo/mongo-store.ts,
 * a replica set) implement it; mixins/db.mixin.ts picks one by env. Engines in lib/ take
 * their Database or Stores in their constructors and never see a broker.
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
  /** Unique among the documents that have the field (one live listing per NFT). */
  uniqueSparse?: string[];
  /**
   * Indexes over several fields, in order (equality fields first, the sort field last):
   * a page of one account's activity read newest first finds its rows in the index. Only
   * for queries with an equality on every field but the last: on SQLite a document missing
   * one of those is left out of the index (a row of a token transfer is in none of the NFT indexes).
   */
  compound?: string[][];
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
  /**
   * Inserts every document in one write, or none: a duplicate of a unique key throws
   * DuplicateKeyError (NeDB writes none of them; MongoDB may have written those before it).
   */
  insertMany(docs: T[]): Promise<T[]>;
  /** Applies `update` ($set, $inc, …) to every match; resolves to how many documents matched. */
  update(query: Query, update: Update): Promise<number>;
  /** Applies `update` to the first match (a compare-and-set when `query` pins a version); the new document or null. */
  updateOne(query: Query, update: Update): Promise<T | null>;
  remove(query: Query): Promise<number>;
  /** Finishes pending writes and lets go of the connection or file. */
  close(): Promise<void>;
}

/** The collections of one service, as a transaction sees them. */
export interface TxStores {
  store<T extends Doc>(name: string): Store<T>;
}

/** A service's database: its collections, and transactions over them. */
export interface Database extends TxStores {
  /**
   * Runs fn as one transaction over this database's collections: all or nothing, isolated
   * (no reader sees half of it), retried on a write conflict where the engine allows it;
   * resolves after the commit is durable. Inside fn use only tx's stores.
   */
  transaction<R>(fn: (tx: TxStores) => Promise<R>): Promise<R>;
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

/**
 * insertIfAbsent for many: one write when none exists yet (the usual case), else one by
 * one, so those already there are skipped. Resolves to how many this call inserted.
 */
export async function insertAllIfAbsent<T extends Doc>(
  store: Store<T>,
  docs: T[],
): Promise<number> {
  if (docs.length === 0) return 0;
  try {
    await store.insertMany(docs);
    return docs.length;
  } catch (err) {
    if (!(err instanceof DuplicateKeyError)) throw err;
  }
  const inserted = await Promise.all(docs.map(d => insertIfAbsent(store, d)));
  return inserted.filter(Boolean).length;
}

/**
 * Removes the documents whose `field` (a time: ms since epoch, or an ISO string with
 * `iso`) is before `cutoffMs`, oldest first, in windows of time sized to take about
 * `batch` documents each, with other work running between windows. Each window's
 * removal finds its documents through the field's index and touches only them: a
 * large backlog never holds the event loop or costs more than its size. Returns how many.
 */
export async function pruneOlderThan<T extends Doc>(
  store: Store<T>,
  field: string,
  cutoffMs: number,
  opts: { iso?: boolean; batch?: number; where?: Query } = {},
): Promise<number> {
  const batch = opts.batch ?? 2000;
  const enc = (ms: number): string | number => (opts.iso ? new Date(ms).toISOString() : ms);
  const before = (ms: number): Query => ({ [field]: { $lt: enc(ms) }, ...opts.where });
  const [oldest] = await store.find(before(cutoffMs), { sort: { [field]: 1 }, limit: 1 });
  if (!oldest) return 0;
  const first = oldest[field];
  let from = typeof first === "number" ? first : Date.parse(String(first));
  let step = 1000;
  let removed = 0;
  while (from < cutoffMs) {
    const to = Math.min(cutoffMs, from + step);
    const n = await store.remove(before(to));
    removed += n;
    // Aim the next window at about `batch` documents.
    if (n > batch * 2) step = Math.max(1, Math.floor(step / 2));
    else if (n < batch / 2) step *= 2;
    from = to;
    await new Promise(resolve => setImmediate(resolve));
  }
  return removed;
}
