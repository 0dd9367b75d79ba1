import type { CollectionSpec, Doc } from "../store/store";
import { newId } from "../shared/ids";

/**
 * The webhooks service's documents (services/webhooks.service.ts): its owners' endpoints
 * and the durable queue of deliveries, one per (endpoint, activity row).
 */

export interface EndpointDoc extends Doc {
  ownerId: string;
  url: string;
  /** ActivityType values, or ["*"] for every type. */
  events: string[];
  description: string | null;
  /** `whsec_…`; signs every delivery; shown once, in the 201 that creates it. */
  secret: string;
  enabled: boolean;
  /** Why it was disabled (its deliveries kept failing), for its owner. */
  disabledReason: string | null;
  /** When its current run of failed attempts began (null: its last attempt succeeded). */
  failingSince: number | null;
  createdAt: string;
}

export type DeliveryState = "pending" | "delivered" | "failed";

export interface DeliveryDoc extends Doc {
  endpointId: string;
  ownerId: string;
  /** The activity row's id: the `webhook-id` of every attempt. */
  eventId: string;
  /** `${endpointId}|${eventId}`: unique, so a redelivered event never queues twice. */
  key: string;
  type: string;
  /** The exact JSON body every attempt sends (and signs). */
  body: string;
  state: DeliveryState;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  /** When the next attempt is due (ms; null once delivered or failed). */
  nextAttemptAt: number | null;
  /**
   * The queue's index of due work: the next attempt's time while waiting, the lease's
   * end while a node sends it; absent once delivered or failed (a sparse index).
   */
  dueAt?: number;
  /** The node sending it now, until leaseUntil; absent between attempts. */
  leaseOwner?: string;
  leaseUntil?: number;
  createdAt: string;
  deliveredAt: string | null;
  /** When it was delivered or failed (ms): retention counts from here. */
  finishedAt?: number;
}

export const ENDPOINTS = "endpoints";
export const DELIVERIES = "deliveries";

export const WEBHOOKS_COLLECTIONS = {
  endpoints: { indexes: ["ownerId"] },
  deliveries: {
    unique: ["key"],
    indexes: ["endpointId", "state"],
    sparse: ["dueAt", "finishedAt"],
  },
} satisfies Record<string, CollectionSpec>;

let lastMs = 0;
let seq = 0;

/**
 * Delivery ids sort by creation (a time prefix, then a counter within the millisecond on
 * this node), so an endpoint's list pages by `_id`.
 */
export function newDeliveryId(nowMs = Date.now()): string {
  if (nowMs > lastMs) {
    lastMs = nowMs;
    seq = 0;
  } else seq++;
  const prefix = lastMs.toString(36).padStart(9, "0") + seq.toString(36).padStart(4, "0");
  return `whd_${prefix}${newId("x").slice(2, 14)}`;
}

/** A webhook as its owner sees it (never the secret). */
export interface Webhook {
  id: string;
  url: string;
  events: string[];
  description: string | null;
  enabled: boolean;
  disabledReason: string | null;
  createdAt: string;
}

export interface WebhookCreated extends Webhook {
  secret: string;
}

export interface DeliveryRow {
  id: string;
  eventId: string;
  type: string;
  state: DeliveryState;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  nextAttemptAt: string | null;
  createdAt: string;
  deliveredAt: string | null;
}

export const toWebhook = (d: EndpointDoc): Webhook => ({
  id: d._id,
  url: d.url,
  events: d.events,
  description: d.description,
  enabled: d.enabled,
  disabledReason: d.disabledReason,
  createdAt: d.createdAt,
});

export const toDeliveryRow = (d: DeliveryDoc): DeliveryRow => ({
  id: d._id,
  eventId: d.eventId,
  type: d.type,
  state: d.state,
  attempts: d.attempts,
  lastStatus: d.lastStatus,
  lastError: d.lastError,
  nextAttemptAt: d.nextAttemptAt === null ? null : new Date(d.nextAttemptAt).toISOString(),
  createdAt: d.createdAt,
  deliveredAt: d.deliveredAt,
});

/** A new pending delivery of `body` (the row's JSON) to `endpoint`, due now. */
export function newDelivery(
  endpoint: Pick<EndpointDoc, "_id" | "ownerId">,
  eventId: string,
  type: string,
  body: string,
  nowMs = Date.now(),
): DeliveryDoc {
  return {
    _id: newDeliveryId(nowMs),
    endpointId: endpoint._id,
    ownerId: endpoint.ownerId,
    eventId,
    key: `${endpoint._id}|${eventId}`,
    type,
    body,
    state: "pending",
    attempts: 0,
    lastStatus: null,
    lastError: null,
    nextAttemptAt: nowMs,
    dueAt: nowMs,
    createdAt: new Date(nowMs).toISOString(),
    deliveredAt: null,
  };
}
