import { it } from "vitest";
import type { CollectionSpec, Database, Doc, Store, TxStores } from "../../lib/store/store";
import { SqliteDatabase } from "../../lib/store/sqlite/sqlite-database";
import { OUTBOX, Outbox, type OutboxDoc } from "../../lib/messaging/outbox";
import type { DomainEvent } from "../../lib/events/domain";

/** Makes the next call of `method` on `store` that `when` accepts throw, once (a crash point). */
export function failOnce<
  T extends Doc,
  K extends "insert" | "insertMany" | "update" | "updateOne" | "remove",
>(
  store: Store<T>,
  method: K,
  when: (...args: Parameters<Store<T>[K]>) => boolean = () => true,
): { fired: () => boolean } {
  const real = store[method].bind(store) as (...args: Parameters<Store<T>[K]>) => unknown;
  let fired = false;
  const wrapped = (...args: Parameters<Store<T>[K]>) => {
    if (!fired && when(...args)) {
      fired = true;
      store[method] = real as Store<T>[K];
      return Promise.reject(new Error(`crash point: ${store.name}.${method}`));
    }
    return real(...args);
  };
  store[method] = wrapped as Store<T>[K];
  return { fired: () => fired };
}

/**
 * failOnce inside `db`'s transactions: the first call of `method` on collection `name`
 * that `when` accepts, inside any transaction, throws, and that transaction rolls back.
 * A crash between two writes of one transaction, as a test can make one.
 */
export function failInTransaction<
  K extends "insert" | "insertMany" | "update" | "updateOne" | "remove",
>(
  db: Database,
  name: string,
  method: K,
  when: (...args: Parameters<Store<Doc>[K]>) => boolean = () => true,
): { fired: () => boolean } {
  const real = db.transaction.bind(db);
  let fired = false;
  db.transaction = <R>(fn: (tx: TxStores) => Promise<R>): Promise<R> =>
    real(async tx => {
      const probe = failOnce(tx.store(name), method, when);
      try {
        return await fn(tx);
      } finally {
        if (probe.fired()) {
          fired = true;
          db.transaction = real;
        }
      }
    });
  return { fired: () => fired };
}

/** One collection in a SQLite database of its own, in memory: a real store for a unit test. */
export async function memoryStore<T extends Doc>(
  name: string,
  spec: CollectionSpec = {},
): Promise<Store<T>> {
  return SqliteDatabase.open({ [name]: spec }).store<T>(name);
}

type WriteMethod = "insert" | "insertMany" | "update" | "updateOne" | "remove";

/** A write of one change, as the place a crash stops it: what it is, collection, method. */
export type CrashPoint = readonly [what: string, collection: string, method: WriteMethod];

/** One test per crash point, titled by `title(what)`; `run` makes the crash and judges it. */
export function atEachWrite(
  points: readonly CrashPoint[],
  title: (what: string) => string,
  run: (collection: string, method: WriteMethod) => Promise<void>,
): void {
  for (const [what, collection, method] of points) it(title(what), () => run(collection, method));
}

/** An outbox over `db`'s outbox collection that publishes into `sink` (the channels' place). */
export function outboxInto(db: Database, sink: DomainEvent[]): Outbox {
  const publisher = {
    ready: () => true,
    publish: async (_t: string, e: DomainEvent) => void sink.push(e),
  };
  return new Outbox(db.store<OutboxDoc>(OUTBOX), publisher, { warn: () => undefined });
}
