import type { Database, Doc, Store, TxStores } from "../store";

/**
 * NeDB collections as a Database. NeDB has no transactions (each collection is its own
 * file and queue): transaction() refuses rather than pretend to be all or nothing.
 */
export class NedbDatabase implements Database {
  constructor(private readonly stores: Record<string, Store>) {}

  store<T extends Doc>(name: string): Store<T> {
    const s = this.stores[name];
    if (!s) throw new Error(`Unknown collection ${name}`);
    // Each collection holds one document type; the caller names it.
    return s as unknown as Store<T>;
  }

  transaction<R>(fn: (tx: TxStores) => Promise<R>): Promise<R> {
    void fn;
    return Promise.reject(
      new Error("NeDB has no transactions: set STORE_ENGINE=sqlite, or MONGO_URI (a replica set)"),
    );
  }

  async close(): Promise<void> {
    for (const store of Object.values(this.stores)) await store.close();
  }
}
