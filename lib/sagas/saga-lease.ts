import { SAGAS, type SagaDoc } from "./saga-log";
import type { Database, Store, TxStores } from "../store/store";
import { ServerError } from "../shared/errors";

/** Another engine took the saga over (this one stalled past its lease). */
export class SagaTakenOver extends ServerError {
  constructor(sagaId: string) {
    super(`Saga ${sagaId} was taken over by another node`, 503, "SERVICE_UNAVAILABLE");
    this.name = "SagaTakenOver";
  }
}

/** What a lease needs to know of its engine. */
export interface LeaseOptions {
  /** The engine's name in the sagas it drives. */
  owner: string;
  /** How long a saga is its owner's without a write before another engine may take it over. */
  leaseMs: number;
}

/**
 * Writes, inside the transaction of a saga's end, what must commit with it (its event in
 * the outbox); resolves to what to call once committed.
 */
export type OnEnd = (tx: TxStores, ended: SagaDoc) => Promise<() => void>;

/**
 * One engine's hold on one saga: every write a compare-and-set on owner and version that
 * extends the lease, one at a time; a timer renews it while a call is out. The end is one
 * transaction with what `onEnd` writes, so an ended saga always has its event.
 */
export class Lease {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private readonly store: Store<SagaDoc>;

  constructor(
    private readonly db: Database,
    public doc: SagaDoc,
    private readonly opts: LeaseOptions,
    private readonly onEnd: OnEnd = async () => () => undefined,
  ) {
    this.store = db.store<SagaDoc>(SAGAS);
    this.timer = setInterval(
      () => {
        this.write({}, false).catch(() => undefined); // a lost lease shows at the next save
      },
      Math.max(10, Math.floor(opts.leaseMs / 3)),
    );
    this.timer.unref();
  }

  save(set: Partial<SagaDoc>): Promise<void> {
    return this.write(set, true);
  }

  /** The final state and the lease's flag off, in one transaction with what `onEnd` writes. */
  end(
    state: "completed" | "compensated" | "failed",
    result?: unknown,
    more: Partial<SagaDoc> = {},
  ) {
    return this.write({ ...more, state, ...(result !== undefined ? { result } : {}) }, true, {
      active: true,
    });
  }

  /** Lets another engine take the saga at once (this one is stopping). */
  async release(): Promise<void> {
    await this.store
      .updateOne({ _id: this.doc._id, owner: this.opts.owner }, { $set: { leaseUntil: 0 } })
      .catch(() => undefined);
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** `unset` only at the end: its write is a transaction with `onEnd`'s. */
  private write(set: Partial<SagaDoc>, changed: boolean, unset?: Record<string, true>) {
    const next = this.chain.then(async () => {
      const { _id, version } = this.doc;
      const change = (store: Store<SagaDoc>) =>
        store.updateOne(
          { _id, owner: this.opts.owner, version },
          {
            $set: {
              ...set,
              version: version + 1,
              leaseUntil: Date.now() + this.opts.leaseMs,
              ...(changed ? { updatedAt: new Date().toISOString() } : {}),
            },
            ...(unset ? { $unset: unset } : {}),
          },
        );
      if (!unset) {
        const doc = await change(this.store);
        if (!doc) throw new SagaTakenOver(_id);
        this.doc = doc;
        return;
      }
      const { doc, send } = await this.db.transaction(async tx => {
        const doc = await change(tx.store<SagaDoc>(SAGAS));
        if (!doc) throw new SagaTakenOver(_id);
        return { doc, send: await this.onEnd(tx, doc) };
      });
      this.doc = doc;
      send();
    });
    this.chain = next.catch(() => undefined);
    return next;
  }
}

/** Sleeps that can all be cut short at once (an engine stopping does not wait out a backoff). */
export class Naps {
  private readonly waking = new Set<() => void>();

  sleep(ms: number): Promise<void> {
    return new Promise(resolve => {
      const wake = () => {
        clearTimeout(timer);
        this.waking.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, ms));
      this.waking.add(wake);
    });
  }

  wakeAll(): void {
    for (const wake of [...this.waking]) wake();
  }
}
