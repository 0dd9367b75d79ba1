import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { DbMethods } from "./db.mixin";
import { DuplicateKeyError, type CollectionSpec, type Doc } from "../lib/store";
import type { DomainEvent } from "../lib/events";

/**
 * Transactional outbox (DESIGN rule 2). A write model stores each event in its own
 * `outbox` collection before it acknowledges the change; this relay publishes the
 * entries with `broker.sendToChannel(type, event)` and then deletes them, so the
 * collection holds only what is still to send (small, and cheap to sweep). It runs
 * right after writes (coalesced) and on a timer, and re-sends whatever a crash left
 * unsent: delivery is at least once, and consumers dedupe by `eventId`.
 *
 * Use: add `...OUTBOX_COLLECTION` to the service's DbMixin collections, mix this in,
 * call `outboxWrite(events)` where the change is saved, and `outboxStart()` at the end
 * of the service's `started` (after its own recovery, so recovered events go out too).
 */

export interface OutboxDoc extends Doc {
  /** The event's id: re-writing the same change after a crash is a no-op. */
  _id: string;
  type: string;
  event: DomainEvent;
  /** ms since epoch, when it was written. */
  at: number;
}

/** Only unsent entries are kept, so no index but `_id` is worth its upkeep. */
export const OUTBOX_COLLECTION: Record<string, CollectionSpec> = {
  outbox: {},
};

export interface OutboxOptions {
  /** How often unsent entries are swept from the database (ms). */
  intervalMs?: number;
  /** Entries published per round. */
  batchSize?: number;
}

export interface OutboxStats {
  /** Entries written and not yet published. */
  unsent: number;
  /** Entries this process published since it started. */
  published: number;
}

export interface OutboxMethods {
  outboxWrite(events: DomainEvent[]): Promise<void>;
  outboxFlush(): Promise<void>;
  outboxSweep(): Promise<number>;
  outboxStart(): Promise<void>;
  outboxStats(): Promise<OutboxStats>;
  /** Whether the event is written and not yet published. */
  outboxHas(eventId: string): Promise<boolean>;
}

interface OutboxVars {
  outbox: {
    opts: Required<OutboxOptions>;
    /** Written by this process and not yet published. */
    queue: OutboxDoc[];
    queued: Set<string>;
    running: Promise<void> | null;
    again: boolean;
    timer: NodeJS.Timeout | null;
    published: number;
    lastWarn: number;
    stopping: boolean;
  };
}

interface Publisher {
  sendToChannel(channel: string, payload: unknown): Promise<unknown>;
  channelAdapter?: {
    connected?: boolean;
    // NATS JetStream only: streams hold events until their consumers come.
    addPrefixTopic?(topic: string): string;
    createStream?(name: string, subjects: string[], opts: object): Promise<unknown>;
  };
}

/**
 * With JetStream a stream is made by the first consumer that subscribes; until then a
 * publish has nowhere to go. The publisher makes the stream itself (as the adapter names
 * it), so an event nobody consumes yet waits there instead of blocking the outbox.
 */
async function ensureStream(broker: Publisher, type: string, done: Set<string>): Promise<void> {
  const adapter = broker.channelAdapter;
  if (!adapter?.createStream || !adapter.addPrefixTopic) return;
  const subject = adapter.addPrefixTopic(type);
  if (done.has(subject)) return;
  await adapter.createStream(subject.split(".").join("_"), [subject], {});
  done.add(subject);
}
type OutboxThis = OutboxMethods & OutboxVars & DbMethods & { broker: unknown; logger: Logger };
interface Logger {
  warn(...args: unknown[]): void;
  debug(...args: unknown[]): void;
}

export function OutboxMixin(options: OutboxOptions = {}): Partial<ServiceSchema> {
  const opts: Required<OutboxOptions> = {
    intervalMs: options.intervalMs ?? 1000,
    batchSize: options.batchSize ?? 500,
  };

  const streams = new Set<string>();

  /** Publishes `docs`; the ones that went out are deleted in one write. Resolves to how many. */
  async function publish(self: OutboxThis, docs: OutboxDoc[]): Promise<number> {
    const broker = self.broker as Publisher;
    // Before the broker has connected its channel adapter (our `started` runs first), or
    // after it began to disconnect, a publish would fail or be dropped: the sweep retries.
    if (docs.length === 0 || broker.channelAdapter?.connected === false) return 0;
    for (const type of new Set(docs.map(d => d.type))) await ensureStream(broker, type, streams);
    const results = await Promise.allSettled(docs.map(d => broker.sendToChannel(d.type, d.event)));
    const ok = docs.filter((_, i) => results[i].status === "fulfilled").map(d => d._id);
    const failed = results.find(r => r.status === "rejected");
    if (failed && Date.now() - self.outbox.lastWarn > 10_000) {
      self.outbox.lastWarn = Date.now();
      self.logger.warn(
        { err: (failed as PromiseRejectedResult).reason, unsent: docs.length - ok.length },
        "Outbox publish failed; will retry",
      );
    }
    if (ok.length > 0) {
      await self.store<OutboxDoc>("outbox").remove({ _id: { $in: ok } });
      self.outbox.published += ok.length;
    }
    return ok.length;
  }

  const schema: Partial<ServiceSchema<ServiceSettingSchema, OutboxMethods, OutboxVars>> = {
    methods: {
      async outboxWrite(this: OutboxThis, events: DomainEvent[]) {
        const store = this.store<OutboxDoc>("outbox");
        const at = Date.now();
        for (const event of events) {
          const doc: OutboxDoc = { _id: event.eventId, type: event.type, event, at };
          try {
            await store.insert(doc);
          } catch (err) {
            // Already written (a retry or a recovery): the first entry stands.
            if (err instanceof DuplicateKeyError) continue;
            throw err;
          }
          this.outbox.queue.push(doc);
          this.outbox.queued.add(doc._id);
        }
        if (!this.outbox.running) setImmediate(() => void this.outboxFlush());
        else this.outbox.again = true;
      },

      /** Publishes what this process wrote; one round at a time. */
      async outboxFlush(this: OutboxThis) {
        const box = this.outbox;
        if (box.running) {
          box.again = true;
          return box.running;
        }
        // The body starts in a microtask: run synchronously (an empty queue), its `finally`
        // would clear `running` before this assignment sets it, and no flush would run again.
        box.running = Promise.resolve().then(async () => {
          try {
            do {
              box.again = false;
              while (box.queue.length > 0) {
                const batch = box.queue.splice(0, opts.batchSize);
                try {
                  await publish(this, batch);
                } finally {
                  for (const d of batch) box.queued.delete(d._id);
                }
              }
            } while (box.again);
          } catch (err) {
            // The entries stay unsent in the database: the sweep retries them.
            this.logger.warn({ err }, "Outbox flush failed");
          } finally {
            box.running = null;
          }
        });
        return box.running;
      },

      /** Publishes unsent entries found in the database (after a crash, or a failed publish). */
      async outboxSweep(this: OutboxThis) {
        const store = this.store<OutboxDoc>("outbox");
        // In no particular order: channels do not order events across a sweep anyway.
        const found = await store.find({}, { limit: opts.batchSize });
        return publish(
          this,
          found.filter(d => !this.outbox.queued.has(d._id)),
        );
      },

      async outboxStart(this: OutboxThis) {
        const box = this.outbox;
        const tick = async () => {
          box.timer = null;
          try {
            // Drain a backlog in full rounds while they go out, then wait for the next interval.
            while ((await this.outboxSweep()) === opts.batchSize && !box.stopping);
          } catch (err) {
            this.logger.warn({ err }, "Outbox sweep failed");
          }
          if (!box.stopping) box.timer = setTimeout(() => void tick(), opts.intervalMs);
        };
        // Shortly after start: the channel adapter connects once every service has started.
        box.timer = setTimeout(() => void tick(), 50);
      },

      async outboxStats(this: OutboxThis) {
        const unsent = await this.store<OutboxDoc>("outbox").count({});
        return { unsent, published: this.outbox.published };
      },

      async outboxHas(this: OutboxThis, eventId: string) {
        return (await this.store<OutboxDoc>("outbox").findOne({ _id: eventId })) !== null;
      },
    },

    created() {
      this.outbox = {
        opts,
        queue: [],
        queued: new Set(),
        running: null,
        again: false,
        timer: null,
        published: 0,
        lastWarn: 0,
        stopping: false,
      };
    },

    async stopped() {
      this.outbox.stopping = true;
      if (this.outbox.timer) clearTimeout(this.outbox.timer);
      await this.outbox.running;
    },
  };
  return schema as Partial<ServiceSchema>;
}
