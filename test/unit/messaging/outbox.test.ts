import { beforeEach, describe, expect, it } from "vitest";
import { domainEvent, TOKEN_EVENTS, type DomainEvent } from "../../../lib/events/domain";
import { memoryStore } from "../../helpers/stores";
import {
  Outbox,
  OUTBOX_COLLECTION,
  type OutboxDoc,
  type OutboxOptions,
} from "../../../lib/messaging/outbox";
import type { Store } from "../../../lib/store/store";
import type { TraceParent } from "../../../lib/observability/trace-tags";

/**
 * The transactional outbox without a broker, over a real NeDB store in memory. The
 * publisher stands for the channels: it can be not ready yet, refuse chosen events, and
 * be slow, so the rounds' bounds show. Two outboxes over one store are a process that
 * crashed with events unsent and the one that comes up after it.
 */

class Channels {
  readonly sent: Array<{ type: string; event: DomainEvent; trace?: TraceParent }> = [];
  isReady = true;
  /** Event ids whose next publish fails. */
  readonly failing = new Set<string>();
  delayMs = 0;
  inFlight = 0;
  maxInFlight = 0;

  ready = () => this.isReady;
  publish = async (type: string, event: DomainEvent, trace?: TraceParent) => {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs) await new Promise(r => setTimeout(r, this.delayMs));
      if (this.failing.delete(event.eventId)) throw new Error("channel down");
      this.sent.push(trace ? { type, event, trace } : { type, event });
    } finally {
      this.inFlight--;
    }
  };

  ids(): string[] {
    return this.sent.map(s => s.event.eventId);
  }
}

let store: Store<OutboxDoc>;
let channels: Channels;
let warnings: string[];

const outboxOn = (opts: OutboxOptions = {}, ch = channels) =>
  new Outbox(store, ch, { warn: (_o, msg) => void warnings.push(msg) }, opts);
const AT = "2026-01-01T00:00:00.000Z";
const ev = (n: number) => ({
  ...domainEvent(TOKEN_EVENTS.transferred, `tx_${n}`, { n }),
  occurredAt: AT,
});
const ids = (...ns: number[]) => ns.map(n => ev(n).eventId);

beforeEach(async () => {
  store = await memoryStore<OutboxDoc>("outbox", OUTBOX_COLLECTION.outbox);
  channels = new Channels();
  warnings = [];
});

describe("Outbox", () => {
  it("publishes what was written, in the order written, and deletes it once sent", async () => {
    const outbox = outboxOn();
    channels.isReady = false; // held back, so what waits can be seen
    await outbox.write([ev(1), ev(2)]);
    await outbox.write([ev(3)]);
    await outbox.flush();
    expect(channels.sent).toEqual([]);
    expect(await outbox.has(ev(1).eventId)).toBe(true);
    expect(await outbox.stats()).toEqual({ unsent: 3, published: 0 });

    channels.isReady = true;
    await outbox.write([ev(4)]);
    await outbox.flush();
    expect(channels.ids()).toEqual(ids(4));
    expect(await outbox.sweep()).toBe(3);
    expect(new Set(channels.ids())).toEqual(new Set(ids(1, 2, 3, 4)));
    expect(await outbox.has(ev(1).eventId)).toBe(false);
    expect(await store.count({})).toBe(0);
    expect(await outbox.stats()).toEqual({ unsent: 0, published: 4 });
  });

  it("publishes in write order right after the writes, without being asked", async () => {
    const outbox = outboxOn();
    await outbox.write([ev(1), ev(2)]);
    await outbox.write([ev(3)]);
    await expect.poll(() => channels.sent.length).toBe(3);
    expect(channels.ids()).toEqual(ids(1, 2, 3));
    expect(channels.sent[0]).toEqual({ type: TOKEN_EVENTS.transferred, event: ev(1) });
    await outbox.flush();
    expect(await outbox.stats()).toEqual({ unsent: 0, published: 3 });
  });

  it("keeps the first entry of an event id written again (a retry), and sends it once", async () => {
    const outbox = outboxOn();
    const written: string[] = [];
    outbox.onWritten = e => void written.push(e.eventId);
    const first = ev(1);
    const again: DomainEvent = { ...first, occurredAt: "2000-01-01T00:00:00.000Z" }; // a later try
    await Promise.all([outbox.write([first]), outbox.write([again]), outbox.write([first])]);
    await outbox.flush();
    expect(channels.sent.map(s => s.event)).toEqual([first]);
    expect(written).toEqual([first.eventId]);
    await outbox.write([first]); // after it was sent: a new entry (consumers dedupe by eventId)
    await outbox.flush();
    expect(channels.ids()).toEqual(ids(1, 1));
  });

  it("survives a failed publish: the entry stays unsent until a sweep sends it", async () => {
    const outbox = outboxOn();
    channels.failing.add(ev(2).eventId);
    await outbox.write([ev(1), ev(2), ev(3)]);
    await outbox.flush();
    expect(channels.ids()).toEqual(ids(1, 3));
    expect(warnings).toEqual(["Outbox publish failed; will retry"]);
    expect(await outbox.stats()).toEqual({ unsent: 1, published: 2 });
    expect(await outbox.has(ev(2).eventId)).toBe(true);

    expect(await outbox.sweep()).toBe(1);
    expect(channels.ids()).toEqual(ids(1, 3, 2));
    expect(await outbox.stats()).toEqual({ unsent: 0, published: 3 });
    expect(await outbox.sweep()).toBe(0);
  });

  it("a failed delete leaves the entries for the sweep, and later writes still go out", async () => {
    const outbox = outboxOn();
    const remove = store.remove.bind(store);
    store.remove = () => ((store.remove = remove), Promise.reject(new Error("disk")));
    await outbox.write([ev(1)]);
    await outbox.flush();
    expect(warnings).toEqual(["Outbox flush failed"]);
    expect(await outbox.stats()).toEqual({ unsent: 1, published: 0 });
    await outbox.write([ev(2)]);
    await outbox.flush();
    expect(await outbox.sweep()).toBe(1); // ev 1 again: at least once
    expect(channels.ids()).toEqual(ids(1, 2, 1));
    expect(await store.count({})).toBe(0);
  });

  it("keeps the writing request's trace with the entry and publishes with it", async () => {
    const trace: TraceParent = { requestID: "req-1", parentID: "span-1", sampled: true };
    const outbox = outboxOn({ traceParent: () => trace });
    channels.isReady = false;
    await outbox.write([ev(1)]);
    await outbox.flush();
    expect((await store.findOne({ _id: ev(1).eventId }))?.trace).toEqual(trace);
    channels.isReady = true;
    await outbox.sweep();
    expect(channels.sent).toEqual([{ type: TOKEN_EVENTS.transferred, event: ev(1), trace }]);
  });
});

describe("Outbox rounds", () => {
  /** Entries a process wrote and crashed before sending: in the store, in no one's queue. */
  async function leftByACrash(n: number): Promise<void> {
    const crashed = new Channels();
    crashed.isReady = false;
    await outboxOn({}, crashed).write(Array.from({ length: n }, (_, i) => ev(i + 1)));
  }

  it("publishes at most a batch per round, a flush's too", async () => {
    channels.delayMs = 5;
    await leftByACrash(5);
    const outbox = outboxOn({ batchSize: 2 });
    expect(await outbox.sweep()).toBe(2);
    expect(await outbox.stats()).toEqual({ unsent: 3, published: 2 });
    expect(channels.maxInFlight).toBe(2);

    channels.maxInFlight = 0;
    await outbox.write([ev(10), ev(11), ev(12)]);
    await outbox.flush();
    expect(channels.ids().slice(-3)).toEqual(ids(10, 11, 12));
    expect(channels.maxInFlight).toBe(2);
  });

  it("once started, drains a crash's backlog in full rounds, and stops", async () => {
    await leftByACrash(5);
    const outbox = outboxOn({ batchSize: 2, intervalMs: 60_000 });
    outbox.start();
    await expect.poll(() => channels.sent.length).toBe(5);
    expect(new Set(channels.ids())).toEqual(new Set(ids(1, 2, 3, 4, 5)));
    // The last round's deletes commit a moment after its publish (SQLite's group commit).
    await expect.poll(() => outbox.stats()).toEqual({ unsent: 0, published: 5 });
    await outbox.stop();
  });

  it("sweeps again on its interval what could not go out before, until stopped", async () => {
    const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
    const outbox = outboxOn({ intervalMs: 20 });
    channels.isReady = false;
    await outbox.write([ev(1)]);
    await outbox.flush();
    outbox.start();
    await sleep(100);
    expect(channels.sent).toEqual([]);
    channels.delayMs = 200;
    channels.isReady = true;
    await expect.poll(() => channels.inFlight).toBe(1); // a sweep is publishing
    await outbox.stop(); // while that sweep runs
    // Another process's entry, in no one's queue: only a sweep would send it.
    await store.insert({ _id: ev(2).eventId, type: ev(2).type, event: ev(2), at: Date.now() });
    await sleep(500);
    expect(channels.ids()).toEqual(ids(1));
    expect(await store.count({})).toBe(1);
  });
});
