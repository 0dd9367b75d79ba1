import type { DatabaseSync } from "node:sqlite";
import type { Doc, FindOptions, Query, Store, TxStores, Update } from "../store";
import { StoreUnavailableError } from "../health";
import type { SqliteCollection } from "./sqlite-collection";

/** What the stores ask of their database (SqliteDatabase), without importing it. */
export interface SqliteHost {
  readonly label: string;
  readonly writer: DatabaseSync;
  collection(name: string): SqliteCollection;
  readConnection(): Promise<DatabaseSync>;
  transaction<R>(fn: (tx: TxStores) => Promise<R>): Promise<R>;
}

/**
 * The two faces of a SQLite collection: a Store outside any transaction (reads on the
 * reader connection, each write its own tiny transaction in the next group commit), and
 * the stores a transaction's fn gets (everything on the writer, at once).
 */

/** A write inside a transaction, in its own savepoint: a failing one (a duplicate in the middle of an update of many) leaves nothing behind, even if fn catches it and goes on. */
function atomic<R>(conn: DatabaseSync, fn: () => R): R {
  conn.exec("SAVEPOINT mm_op");
  try {
    const r = fn();
    conn.exec("RELEASE mm_op");
    return r;
  } catch (err) {
    // After a full disk SQLite may have rolled the whole transaction back itself: then
    // there is no savepoint left, and the batch fails as a whole (runBatch).
    if (conn.isTransaction) {
      conn.exec("ROLLBACK TO mm_op");
      conn.exec("RELEASE mm_op");
    }
    throw err;
  }
}

/** Runs a synchronous operation as the Promise the Store contract returns. */
function settle<R>(fn: () => R): Promise<R> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}

class TxStore<T extends Doc> implements Store<T> {
  constructor(
    readonly name: string,
    private readonly c: SqliteCollection<T>,
    private readonly view: TxView,
  ) {}

  private run<R>(fn: (conn: DatabaseSync) => R): Promise<R> {
    return settle(() => fn(this.view.connection()));
  }

  private write<R>(fn: (conn: DatabaseSync) => R): Promise<R> {
    return this.run(conn => atomic(conn, () => fn(conn)));
  }

  findOne(query: Query): Promise<T | null> {
    return this.run(conn => this.c.findOne(conn, query));
  }
  find(query: Query, opts?: FindOptions): Promise<T[]> {
    return this.run(conn => this.c.find(conn, query, opts));
  }
  count(query: Query): Promise<number> {
    return this.run(conn => this.c.count(conn, query));
  }
  insert(doc: T): Promise<T> {
    return this.write(conn => this.c.insert(conn, doc));
  }
  insertMany(docs: T[]): Promise<T[]> {
    return this.write(conn => this.c.insertMany(conn, docs));
  }
  update(query: Query, update: Update): Promise<number> {
    return this.write(conn => this.c.update(conn, query, update));
  }
  updateOne(query: Query, update: Update): Promise<T | null> {
    return this.write(conn => this.c.updateOne(conn, query, update));
  }
  remove(query: Query): Promise<number> {
    return this.write(conn => this.c.remove(conn, query));
  }
  /** The database closes, not one transaction's view of it. */
  async close(): Promise<void> {}
}

/** The stores of one transaction; usable only while it runs. */
export class TxView implements TxStores {
  private open = true;
  private readonly stores = new Map<string, Store<Doc>>();

  constructor(private readonly db: SqliteHost) {}

  connection(): DatabaseSync {
    if (!this.open) throw new Error("A transaction's stores were used after it ended");
    // Never a statement outside the batch's transaction (it would commit on its own).
    if (!this.db.writer.isTransaction) throw new StoreUnavailableError(this.db.label);
    return this.db.writer;
  }

  store<T extends Doc>(name: string): Store<T> {
    let s = this.stores.get(name);
    if (!s) {
      s = new TxStore(name, this.db.collection(name), this);
      this.stores.set(name, s);
    }
    // Each collection holds one document type; the caller names it.
    return s as unknown as Store<T>;
  }

  end(): void {
    this.open = false;
  }
}

export class SqliteStore<T extends Doc> implements Store<T> {
  constructor(
    readonly name: string,
    private readonly c: SqliteCollection<T>,
    private readonly db: SqliteHost,
  ) {}

  private async read<R>(fn: (conn: DatabaseSync) => R): Promise<R> {
    return fn(await this.db.readConnection());
  }

  /** One write as its own transaction: acknowledged when the batch it joined is committed. */
  private write<R>(fn: (tx: Store<T>) => Promise<R>): Promise<R> {
    return this.db.transaction(tx => fn(tx.store<T>(this.name)));
  }

  findOne(query: Query): Promise<T | null> {
    return this.read(conn => this.c.findOne(conn, query));
  }
  find(query: Query, opts?: FindOptions): Promise<T[]> {
    return this.read(conn => this.c.find(conn, query, opts));
  }
  count(query: Query): Promise<number> {
    return this.read(conn => this.c.count(conn, query));
  }
  insert(doc: T): Promise<T> {
    return this.write(s => s.insert(doc));
  }
  insertMany(docs: T[]): Promise<T[]> {
    return this.write(s => s.insertMany(docs));
  }
  update(query: Query, update: Update): Promise<number> {
    return this.write(s => s.update(query, update));
  }
  updateOne(query: Query, update: Update): Promise<T | null> {
    return this.write(s => s.updateOne(query, update));
  }
  remove(query: Query): Promise<number> {
    return this.write(s => s.remove(query));
  }
  /** The database closes with its service (SqliteDatabase.close), not one collection. */
  async close(): Promise<void> {}
}
