import { afterEach, describe, expect, it } from "vitest";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import { DeliveryQueue, type QueueOptions } from "../../../lib/webhooks/delivery-queue";
import {
  DELIVERIES,
  ENDPOINTS,
  WEBHOOKS_COLLECTIONS,
  newDelivery,
  type DeliveryDoc,
  type EndpointDoc,
} from "../../../lib/webhooks/documents";
import { DEFAULT_SCHEDULE } from "../../../lib/webhooks/schedule";
import { createSender, type AttemptResult, type Sender } from "../../../lib/webhooks/sender";
import { newSecret } from "../../../lib/webhooks/signer";
import { waitUntil } from "../../helpers/cluster";
import { startWebhookReceiver, type Receiver } from "../../helpers/webhooks";

/**
 * The queue's leases, with two queues on one database as two replicas on one MongoDB
 * would be: an attempt is never sent by both at once, and a delivery claimed by a node
 * that died is taken by the other once its lease ends; the dead node's late result
 * then changes nothing.
 */

const quiet = { info: () => undefined, warn: () => undefined };
const options = (owner: string, over: Partial<QueueOptions> = {}): QueueOptions => ({
  owner,
  leaseMs: 60_000,
  pollMs: 20,
  concurrency: 16,
  perEndpoint: 8,
  schedule: { ...DEFAULT_SCHEDULE, delaysMs: [50, 50] },
  disableAfterMs: 3600_000,
  retentionMs: 3600_000,
  ...over,
});

describe("lib/webhooks/delivery-queue", () => {
  const cleanup: Array<() => Promise<unknown> | void> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  async function setup(): Promise<{
    db: SqliteDatabase;
    receiver: Receiver;
    endpoint: EndpointDoc;
  }> {
    const db = SqliteDatabase.open(WEBHOOKS_COLLECTIONS);
    const receiver = await startWebhookReceiver();
    cleanup.push(
      () => db.close(),
      () => receiver.close(),
    );
    const endpoint: EndpointDoc = {
      _id: "whk_1",
      ownerId: "usr_1",
      url: receiver.url,
      events: ["*"],
      description: null,
      secret: newSecret(),
      enabled: true,
      disabledReason: null,
      failingSince: null,
      createdAt: new Date().toISOString(),
    };
    await db.store<EndpointDoc>(ENDPOINTS).insert(endpoint);
    return { db, receiver, endpoint };
  }

  const queue = (db: SqliteDatabase, sender: Sender, opts: QueueOptions) => {
    const q = new DeliveryQueue(db, sender, quiet, opts);
    cleanup.push(() => q.stop(0));
    return q;
  };

  it("two replicas on one store send each delivery once", async () => {
    const { db, receiver, endpoint } = await setup();
    const docs = Array.from({ length: 60 }, (_, i) =>
      newDelivery(endpoint, `act_${i}`, "transfer.in", JSON.stringify({ id: `act_${i}` })),
    );
    await db.store<DeliveryDoc>(DELIVERIES).insertMany(docs);
    const sender = createSender({ allowPrivate: true }, 2000, "test");
    cleanup.push(() => sender.close());
    const a = queue(db, sender, options("node-a"));
    const b = queue(db, sender, options("node-b"));
    await Promise.all([a.start(false), b.start(false)]);
    await waitUntil(
      async () => (await db.store(DELIVERIES).count({ state: "delivered" })) === 60,
      10_000,
      20,
    );
    expect(receiver.hits).toHaveLength(60);
    expect(new Set(receiver.hits.map(h => h.id)).size).toBe(60);
  });

  it("takes over a dead node's claimed delivery after its lease; the dead node's late answer changes nothing", async () => {
    const { db, receiver, endpoint } = await setup();
    const d = newDelivery(endpoint, "act_x", "transfer.in", '{"id":"act_x"}');
    await db.store<DeliveryDoc>(DELIVERIES).insert(d);

    // Node A claims it and hangs in its attempt (as a node does that is about to die).
    let answerA: (r: AttemptResult) => void = () => undefined;
    let sentByA = 0;
    const hanging: Sender = {
      send: () => {
        sentByA++;
        return new Promise<AttemptResult>(resolve => (answerA = resolve));
      },
      close: () => undefined,
    };
    const a = queue(db, hanging, options("node-a", { leaseMs: 400 }));
    await a.start(false);
    await waitUntil(() => sentByA === 1, 5000, 10);
    await a.stop(0); // dead: it claims nothing more, and never records the attempt

    const sender = createSender({ allowPrivate: true }, 2000, "test");
    cleanup.push(() => sender.close());
    const b = queue(db, sender, options("node-b"));
    await b.start(false);
    const t0 = Date.now();
    await waitUntil(() => receiver.attemptsOf("act_x") === 1, 5000, 10);
    expect(Date.now() - t0).toBeGreaterThan(200); // not before A's lease ended
    await waitUntil(
      async () =>
        (await db.store<DeliveryDoc>(DELIVERIES).findOne({ _id: d._id }))?.state === "delivered",
      5000,
      10,
    );

    answerA({ ok: false, status: 500, error: "HTTP 500" });
    await new Promise(r => setTimeout(r, 100));
    const after = await db.store<DeliveryDoc>(DELIVERIES).findOne({ _id: d._id });
    expect(after).toMatchObject({ state: "delivered", attempts: 1, lastStatus: 200 });
  });

  it("ends a delivery failed after the schedule's last attempt", async () => {
    const { db, endpoint } = await setup();
    const d = newDelivery(endpoint, "act_f", "transfer.in", "{}");
    await db.store<DeliveryDoc>(DELIVERIES).insert(d);
    const failing: Sender = {
      send: async () => ({ ok: false, status: 500, error: "HTTP 500" }),
      close: () => undefined,
    };
    const q = queue(db, failing, options("node-a"));
    await q.start(false);
    await waitUntil(
      async () =>
        (await db.store<DeliveryDoc>(DELIVERIES).findOne({ _id: d._id }))?.state === "failed",
      5000,
      10,
    );
    expect(await db.store<DeliveryDoc>(DELIVERIES).findOne({ _id: d._id })).toMatchObject({
      attempts: 3,
      lastStatus: 500,
      nextAttemptAt: null,
    });
    expect(await q.stats()).toMatchObject({ pending: 0, failed: 1 });
  });

  it("forgets delivered and failed deliveries after the retention, never pending ones", async () => {
    const { db, endpoint } = await setup();
    const store = db.store<DeliveryDoc>(DELIVERIES);
    const old = Date.now() - 2 * 3600_000;
    const base = (id: string) => newDelivery(endpoint, id, "transfer.in", "{}", old);
    const { dueAt: _a, ...delivered } = {
      ...base("act_d"),
      state: "delivered" as const,
      finishedAt: old,
    };
    const { dueAt: _b, ...failed } = {
      ...base("act_f"),
      state: "failed" as const,
      finishedAt: old,
    };
    const recent = { ...base("act_r"), state: "delivered" as const, finishedAt: Date.now() };
    await store.insertMany([delivered, failed, recent, base("act_p")]);
    const q = queue(
      db,
      { send: async () => ({ ok: true, status: 200 }), close: () => undefined },
      options("node-a"),
    );
    expect(await q.prune()).toBe(2);
    expect((await store.find({})).map(d => d.eventId).sort()).toEqual(["act_p", "act_r"]);
  });
});
