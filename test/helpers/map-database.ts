import { DuplicateKeyError } from "../../lib/store/store";
import type { Database, Doc, Query, Store, TxStores } from "../../lib/store/store";

/**
 * A Database (lib/store/store.ts) over Maps, for the migration's tests while the SQLite one
 * lands on its own branch: collections are Maps of documents by `_id` (unique), a
 * transaction works on a copy of them that replaces them when it resolves and is dropped
 * when it throws. Queries: `{}`, and fields equal to a value or `{ $in: [...] }`. Only
 * what the migration calls; the rest throws.
 */

type Collections = Map<string, Map<string, Doc>>;

const clone = <T>(v: T): T => structuredClone(v);

function matches(doc: Doc, query: Query): boolean {
  for (const [field, want] of Object.entries(query)) {
    const have = doc[field];
    if (want !== null && typeof want === "object" && "$in" in want) {
      if (!(want.$in as unknown[]).includes(have)) return false;
    } else if (have !== want) return false;
  }
  return true;
}

class MapStore<T extends Doc> implements Store<T> {
  constructor(
    readonly name: string,
    private readonly docs: Map<string, Doc>,
  ) {}

  async findOne(query: Query): Promise<T | null> {
    return (await this.find(query))[0] ?? null;
  }
  async find(query: Query): Promise<T[]> {
    return [...this.docs.values()].filter(d => matches(d, query)).map(d => clone(d) as T);
  }
  async count(query: Query): Promise<number> {
    return (await this.find(query)).length;
  }
  async insert(doc: T): Promise<T> {
    return (await this.insertMany([doc]))[0];
  }
  async insertMany(docs: T[]): Promise<T[]> {
    const ids = new Set<string>();
    for (const d of docs) {
      if (this.docs.has(d._id) || ids.has(d._id)) throw new DuplicateKeyError(this.name);
      ids.add(d._id);
    }
    for (const d of docs) this.docs.set(d._id, clone(d));
    return docs;
  }
  update(): Promise<number> {
    throw new Error("MapStore.update: not needed by the migration");
  }
  updateOne(): Promise<T | null> {
    throw new Error("MapStore.updateOne: not needed by the migration");
  }
  async remove(query: Query): Promise<number> {
    const gone = [...this.docs.values()].filter(d => matches(d, query));
    for (const d of gone) this.docs.delete(d._id);
    return gone.length;
  }
  async close(): Promise<void> {}
}

function storesOf(collections: Collections, declared: Set<string>): TxStores {
  return {
    store<T extends Doc>(name: string): Store<T> {
      if (!declared.has(name)) throw new Error(`Unknown collection ${name}`);
      let docs = collections.get(name);
      if (!docs) collections.set(name, (docs = new Map()));
      return new MapStore<T>(name, docs);
    },
  };
}

export class MapDatabase implements Database {
  /** The committed collections. */
  collections: Collections = new Map();
  /** Transactions committed so far. */
  commits = 0;
  /** Throws in the transaction after this many commits (a crash midway), once. */
  failAfterCommits: number | null = null;
  private readonly declared: Set<string>;

  constructor(collections: string[]) {
    this.declared = new Set(collections);
  }

  store<T extends Doc>(name: string): Store<T> {
    return storesOf(this.collections, this.declared).store<T>(name);
  }

  async transaction<R>(fn: (tx: TxStores) => Promise<R>): Promise<R> {
    if (this.failAfterCommits !== null && this.commits >= this.failAfterCommits) {
      this.failAfterCommits = null;
      throw new Error("crash");
    }
    const copy: Collections = new Map(
      [...this.collections].map(([name, docs]) => [name, new Map(docs)]),
    );
    const result = await fn(storesOf(copy, this.declared));
    this.collections = copy;
    this.commits++;
    return result;
  }

  async close(): Promise<void> {}

  /** A collection's documents, sorted by `_id`. */
  docs(name: string): Doc[] {
    return [...(this.collections.get(name)?.values() ?? [])].sort((a, b) =>
      a._id < b._id ? -1 : a._id > b._id ? 1 : 0,
    );
  }
}
