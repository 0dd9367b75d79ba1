import type { ActivityRow } from "../events/activity";
import { ACTIVITY_TYPES } from "../events/activity";
import type { Database, TxStores } from "../store/store";
import { businessError, notFound } from "../shared/errors";
import { newId } from "../shared/ids";
import {
  DELIVERIES,
  ENDPOINTS,
  newDelivery,
  toDeliveryRow,
  toWebhook,
  type DeliveryDoc,
  type DeliveryRow,
  type EndpointDoc,
  type Webhook,
  type WebhookCreated,
} from "./documents";
import { newSecret } from "./signer";

/**
 * Owners' webhook endpoints, and which deliveries an activity row makes. Only an
 * endpoint's owner sees or changes it: anyone else gets the same 404 as for one that
 * does not exist. The URL is checked (lib/webhooks/url-policy.ts) before it gets here.
 */

/** The event types an endpoint may name: ActivityType values, or "*" (the test event always goes). */
export const WEBHOOK_EVENT_TYPES = ["*", ...ACTIVITY_TYPES] as const;

export const TEST_EVENT = "webhook.test";

export interface NewEndpoint {
  url: string;
  events: string[];
  description?: string;
}

export class WebhookEndpoints {
  constructor(
    private readonly db: Database,
    private readonly maxPerOwner: number,
  ) {}

  /** A new endpoint of `ownerId`; the answer is the only place its secret is shown. */
  async create(ownerId: string, input: NewEndpoint): Promise<WebhookCreated> {
    const doc: EndpointDoc = {
      _id: newId("whk"),
      ownerId,
      url: input.url,
      events: [...new Set(input.events)],
      description: input.description ?? null,
      secret: newSecret(),
      enabled: true,
      disabledReason: null,
      failingSince: null,
      createdAt: new Date().toISOString(),
    };
    // Count and insert together, so racing requests cannot pass the bound.
    await this.db.transaction(async tx => {
      const endpoints = tx.store<EndpointDoc>(ENDPOINTS);
      if ((await endpoints.count({ ownerId })) >= this.maxPerOwner)
        throw businessError("TOO_MANY_WEBHOOKS", `At most ${this.maxPerOwner} webhooks per user`);
      await endpoints.insert(doc);
    });
    return { ...toWebhook(doc), secret: doc.secret };
  }

  async list(ownerId: string): Promise<Webhook[]> {
    const docs = await this.db
      .store<EndpointDoc>(ENDPOINTS)
      .find({ ownerId }, { sort: { createdAt: 1, _id: 1 } });
    return docs.map(toWebhook);
  }

  /** The owner's endpoint; 404 for anyone else's. */
  async mine(ownerId: string, id: string): Promise<EndpointDoc> {
    const doc = await this.db.store<EndpointDoc>(ENDPOINTS).findOne({ _id: id });
    if (!doc || doc.ownerId !== ownerId) throw notFound("Webhook");
    return doc;
  }

  /** Removes the endpoint and its deliveries (those under way end with it). */
  async remove(ownerId: string, id: string): Promise<Webhook> {
    const doc = await this.mine(ownerId, id);
    await this.db.transaction(async tx => {
      await tx.store<DeliveryDoc>(DELIVERIES).remove({ endpointId: id });
      await tx.store<EndpointDoc>(ENDPOINTS).remove({ _id: id });
    });
    return toWebhook(doc);
  }

  /**
   * The endpoint's deliveries, newest first, `limit` at a time; `next` is the cursor of
   * the following page (null on the last). Ids sort by creation, so the cursor is one.
   */
  async deliveries(
    ownerId: string,
    id: string,
    limit: number,
    cursor?: string,
  ): Promise<{ rows: DeliveryRow[]; next: string | null }> {
    await this.mine(ownerId, id);
    const docs = await this.db
      .store<DeliveryDoc>(DELIVERIES)
      .find(
        { endpointId: id, ...(cursor ? { _id: { $lt: cursor } } : {}) },
        { sort: { _id: -1 }, limit: limit + 1 },
      );
    const rows = docs.slice(0, limit);
    return {
      rows: rows.map(toDeliveryRow),
      next: docs.length > limit ? rows[rows.length - 1]._id : null,
    };
  }

  /** Queues a `webhook.test` event to the endpoint; its delivery. */
  async queueTest(ownerId: string, id: string): Promise<DeliveryDoc> {
    const ep = await this.mine(ownerId, id);
    const now = Date.now();
    const eventId = newId("whtest");
    const row = {
      id: eventId,
      type: TEST_EVENT,
      at: new Date(now).toISOString(),
      actorId: ownerId,
      data: { webhookId: ep._id },
    };
    const d = newDelivery(ep, eventId, TEST_EVENT, JSON.stringify(row), now);
    await this.db.store<DeliveryDoc>(DELIVERIES).insert(d);
    return d;
  }
}

/** Whether an endpoint takes rows of `type`. */
export const wants = (ep: Pick<EndpointDoc, "events">, type: string): boolean =>
  ep.events.includes("*") || ep.events.includes(type);

/** The minimum an activity row needs to be delivered; anything else is skipped. */
/**
 * The rows of an `activity.recorded` payload: `{ rows }`, or a row alone (the shape of the
 * events published before they carried batches). Whatever is not a row is left out.
 */
export function rowsOfRecorded(data: unknown): { rows: ActivityRow[]; malformed: number } {
  const batch = (data as { rows?: unknown } | null)?.rows;
  const all: unknown[] = Array.isArray(batch) ? batch : [data];
  const rows = all.filter(isActivityRow);
  return { rows, malformed: all.length - rows.length };
}

export function isActivityRow(v: unknown): v is ActivityRow {
  const r = v as Partial<ActivityRow> | null;
  return (
    typeof r === "object" &&
    r !== null &&
    typeof r.id === "string" &&
    typeof r.type === "string" &&
    typeof r.actorId === "string"
  );
}

/**
 * Inside the transaction that records the events as applied: one pending delivery for
 * every enabled endpoint of each row's actor that names its type. A delivery already
 * there for (endpoint, row) is kept, so a row that comes again never queues twice.
 * Resolves to how many were queued.
 */
export async function queueRows(tx: TxStores, rows: ActivityRow[]): Promise<number> {
  const endpoints = tx.store<EndpointDoc>(ENDPOINTS);
  const deliveries = tx.store<DeliveryDoc>(DELIVERIES);
  const byActor = new Map<string, ActivityRow[]>();
  for (const r of rows) byActor.set(r.actorId, [...(byActor.get(r.actorId) ?? []), r]);
  let queued = 0;
  const now = Date.now();
  for (const [actorId, own] of byActor) {
    const eps = await endpoints.find({ ownerId: actorId, enabled: true });
    if (eps.length === 0) continue;
    for (const row of own) {
      const body = JSON.stringify(row);
      for (const ep of eps) {
        if (!wants(ep, row.type)) continue;
        const d = newDelivery(ep, row.id, row.type, body, now);
        // Looked up, not caught: a duplicate-key error would abort a MongoDB transaction.
        if (await deliveries.findOne({ key: d.key })) continue;
        await deliveries.insert(d);
        queued++;
      }
    }
  }
  return queued;
}
