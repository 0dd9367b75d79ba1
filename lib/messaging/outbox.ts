import type { CollectionSpec, Database, Doc, Store, TxStores } from "../store/store";
import { DuplicateKeyError, insertIfAbsent } from "../store/store";
import type { DomainEvent } from "../events/domain";
import type { TraceParent } from "../observability/trace-tags";

/**
 * Transactional outbox (docs/architecture.md rule 2). A write model stores each event in its own
 * `outbox` collection before it acknowledges the change; the relay publishes the
 * entries and then deletes them, so the collection holds only what is still to send
 * (small, and cheap to sweep). It runs right after writes (coalesced) and on a timer,
 * and re-sends whatever a crash left unsent: delivery is at least once, and consumers
 * dedupe by `eventId`.
 *
 * No broker in here: it publishes through an EventPublisher (mixins/outbox.mixin.ts
 * gives it the broker's channels), so engines and their tests take it as they take
 * their stores.
 */

export interface OutboxDoc extends Doc {
  /** The event's id: re-writing the same change after a crash is a no-op. */
  _id: string;
  type: string;
  event: DomainEvent;
  /** ms since epoch, when it was written. */
  at: number;
  /** The request that wrote it: the publish joins that request's trace. */
  trace?: TraceParent;
}

/** Only unsent entries are kept, so no index but `_id` is worth its upkeep. */
export const OUTBOX_COLLECTION: Record<string, CollectionSpec> = {
  outbox: {},
};

/** The outbox's collection, in the database of the service that owns it. */
export const OUTBOX = "outbox";

/** What an engine needs of the outbox: write events with its change, ask if one is unsent. */
export interface OutboxWriter {
  write(events: DomainEvent[]): Promise<void>;
  /** Whether the event is written and not yet published. */
  has(eventId: string): Promise<boolean>;
  /**
   * Writes `events` inside `tx`, with the change they tell of: both commit or neither.
   * Resolves to what to call once the transaction has committed, which sends them.
   */
  writeIn(tx: TxStores, events: DomainEvent[]): Promise<() => void>;
}

/**
 * One change of a write model: `fn`'s writes and the events it pushes commit in one
 * transaction of `db`, and are sent once committed. A unique key another writer took
 * meanwhile (DuplicateKeyError) rolls it back and runs it once more, to find that commit.
 */
export async function commitWithEvents<R>(
  db: Database,
  outbox: OutboxWriter,
  fn: (tx: TxStores, events: DomainEvent[]) => Promise<R>,
): Promise<R> {
  const once = async (): Promise<R> => {
    const { value, send } = await db.transaction(async tx => {
      const events: DomainEvent[] = [];
      const value = await fn(tx, events);
      return { value, send: events.length > 0 ? await outbox.writeIn(tx, events) : null };
    });
    send?.();
    return value;
  };
  try {
    return await once();
  } catch (err) {
    if (!(err instanceof DuplicateKeyError)) throw err;
    return once();
  }
}

export interface EventPublisher {
  /** False before the channel adapter has connected or after it began to disconnect. */
  ready(): boolean;
  publish(type: string, event: DomainEvent, trace?: TraceParent): Promise<void>;
}

export interface OutboxOptions {
  /** How often unsent entries are swept from the database (ms). */
  intervalMs?: number;
  /** Entries published per round. */
  batchSize?: number;
  /** The running request's trace position, kept with each entry written (mixins/outbox.mixin.ts). */
  traceParent?: () => TraceParent | undefined;
}

export interface OutboxStats {
  /** Entries written and not yet published. */
  unsent: number;
  /** Entries this process published since it started. */
  published: number;
}

interface WarnLogger {
  warn(obj: object, msg: string): void;
}

export class Outbox implements OutboxWriter {
  private readonly opts: Required<Omit<OutboxOptions, "traceParent">>;
  private readonly traceParent: () => TraceParent | undefined;
  /** Written by this process and not yet published. */
  private queue: OutboxDoc[] = [];
  private readonly queued = new Set<string>();
  private running: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private published = 0;
  private lastWarn = 0;
  private stopping = false;
  /** Told of each event written here for the first time: the commit point metrics count at. */
  onWritten?: (event: DomainEvent) => void;

  constructor(
    private readonly store: Store<OutboxDoc>,
    private readonly publisher: EventPublisher,
    private readonly logger: WarnLogger,
    options: OutboxOptions = {},
  ) {
    this.opts = { intervalMs: options.intervalMs ?? 1000, batchSize: options.batchSize ?? 500 };
    this.traceParent = options.traceParent ?? (() => undefined);
  }

  async write(events: DomainEvent[]): Promise<void> {
    const fresh: OutboxDoc[] = [];
    for (const doc of this.entries(events))
      // Already written (a retry or a recovery): the first entry stands.
      if (await insertIfAbsent(this.store, doc)) fresh.push(doc);
    this.enqueue(fresh);
  }

  async writeIn(tx: TxStores, events: DomainEvent[]): Promise<() => void> {
    const docs = this.entries(events);
    // A duplicate id throws, and rolls the whole transaction back: its change was made.
    await tx.store<OutboxDoc>(OUTBOX).insertMany(docs);
    return () => this.enqueue(docs);
  }

  private entries(events: DomainEvent[]): OutboxDoc[] {
    const at = Date.now();
    const trace = this.traceParent();
    return events.map(event => {
      const doc: OutboxDoc = { _id: event.eventId, type: event.type, event, at };
      if (trace) doc.trace = trace;
      return doc;
    });
  }

  /** Written and committed: to be published by the next flush. */
  private enqueue(docs: OutboxDoc[]): void {
    for (const doc of docs) {
      this.queue.push(doc);
      this.queued.add(doc._id);
      this.onWritten?.(doc.event);
    }
    if (!this.running) setImmediate(() => void this.flush());
    else this.again = true;
  }

  async has(eventId: string): Promise<boolean> {
    return (await this.store.findOne({ _id: eventId })) !== null;
  }

  /** Publishes what this process wrote; one round at a time. */
  flush(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    // The body starts in a microtask: run synchronously (an empty queue), its `finally`
    // would clear `running` before this assignment sets it, and no flush would run again.
    this.running = Promise.resolve().then(async () => {
      try {
        do {
          this.again = false;
          while (this.queue.length > 0) {
            const batch = this.queue.splice(0, this.opts.batchSize);
            try {
              await this.publish(batch);
            } finally {
              for (const d of batch) this.queued.delete(d._id);
            }
          }
        } while (this.again);
      } catch (err) {
        // The entries stay unsent in the database: the sweep retries them.
        this.logger.warn({ err }, "Outbox flush failed");
      } finally {
        this.running = null;
      }
    });
    return this.running;
  }

  /** Publishes unsent entries found in the database (after a crash, or a failed publish). */
  async sweep(): Promise<number> {
    // In no particular order: channels do not order events across a sweep anyway.
    const found = await this.store.find({}, { limit: this.opts.batchSize });
    return this.publish(found.filter(d => !this.queued.has(d._id)));
  }

  /** Starts the periodic sweep: call it after the owner's own recovery, so recovered events go out too. */
  start(): void {
    const tick = async () => {
      this.timer = null;
      try {
        // Drain a backlog in full rounds while they go out, then wait for the next interval.
        while ((await this.sweep()) === this.opts.batchSize && !this.stopping);
      } catch (err) {
        this.logger.warn({ err }, "Outbox sweep failed");
      }
      if (!this.stopping) this.timer = setTimeout(() => void tick(), this.opts.intervalMs);
    };
    // Shortly after start: the channel adapter connects once every service has started.
    this.timer = setTimeout(() => void tick(), 50);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  async stats(): Promise<OutboxStats> {
    return { unsent: await this.store.count({}), published: this.published };
  }

  /** Publishes `docs`; the ones that went out are deleted in one write. Resolves to how many. */
  private async publish(docs: OutboxDoc[]): Promise<number> {
    // Before the adapter has connected (our owner starts first), or after it began to
    // disconnect, a publish would fail or be dropped: the sweep retries.
    if (docs.length === 0 || !this.publisher.ready()) return 0;
    const results = await Promise.allSettled(
      docs.map(d => this.publisher.publish(d.type, d.event, d.trace)),
    );
    const ok = docs.filter((_, i) => results[i].status === "fulfilled").map(d => d._id);
    const failed = results.find(r => r.status === "rejected");
    if (failed && Date.now() - this.lastWarn > 10_000) {
      this.lastWarn = Date.now();
      this.logger.warn(
        { err: (failed as PromiseRejectedResult).reason, unsent: docs.length - ok.length },
        "Outbox publish failed; will retry",
      );
    }
    if (ok.length > 0) {
      await this.store.remove({ _id: { $in: ok } });
      this.published += ok.length;
    }
    return ok.length;
  }
}
