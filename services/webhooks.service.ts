import type { Context, Service, ServiceSchema } from "moleculer";
import { DbMixin, type DbMethods, type DbSettings, type DbVars } from "../mixins/db.mixin";
import {
  ReadModelMixin,
  type ReadModelMethods,
  type ReadModelSettings,
  type ReadModelVars,
} from "../mixins/read-model.mixin";
import { ACTIVITY_EVENTS, type ActivityRow } from "../lib/events/activity";
import { APPLIED_COLLECTION } from "../lib/read-models/applied-events";
import { created, requireUserId, type GatewayContext } from "../lib/shared/context";
import { ConfigError, isProduction } from "../lib/shared/config-guards";
import { envBool, envInt, envStr } from "../lib/shared/env";
import { notFound, validationError } from "../lib/shared/errors";
import { newId } from "../lib/shared/ids";
import { repeat } from "../lib/shared/repeat";
import { textRule, urlRule } from "../lib/shared/text-rules";
import { DeliveryQueue, type WebhookStats } from "../lib/webhooks/delivery-queue";
import {
  DELIVERIES,
  WEBHOOKS_COLLECTIONS,
  toDeliveryRow,
  toWebhook,
  type DeliveryDoc,
  type DeliveryRow,
  type Webhook,
  type WebhookCreated,
} from "../lib/webhooks/documents";
import {
  WEBHOOK_EVENT_TYPES,
  WebhookEndpoints,
  rowsOfRecorded,
  queueRows,
} from "../lib/webhooks/endpoints";
import { scheduleFromEnv, type RetrySchedule } from "../lib/webhooks/schedule";
import { createSender, type Sender } from "../lib/webhooks/sender";
import { UrlRefused, checkWebhookUrl } from "../lib/webhooks/url-policy";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * webhooks: owners' webhook endpoints and the signed delivery of their activity rows
 * (docs/api.md "Webhooks"). Rows arrive on the `activity.recorded` channel in the
 * consumer group "webhooks" (mixins/read-model.mixin.ts); each row's deliveries are
 * inserted in the transaction that records the event as applied, so a redelivered
 * event queues nothing twice. The queue (lib/webhooks/delivery-queue.ts) sends them
 * from this service's store with leases, bounded concurrency and retries for a day; the
 * signing, the URL policy and the schedule are lib/webhooks/. This file holds params,
 * handlers and wiring. No secret is ever logged: only the 201 that creates an endpoint carries it.
 */

interface WebhooksOwnSettings {
  webhooks: {
    /** WEBHOOKS_ALLOW_PRIVATE: private addresses and plain http (development, tests). */
    allowPrivate: boolean;
    /** One attempt's whole time (connect, answer) before it counts as failed (ms). */
    timeoutMs: number;
    leaseMs: number;
    pollMs: number;
    concurrency: number;
    perEndpoint: number;
    schedule: RetrySchedule;
    disableAfterMs: number;
    retentionMs: number;
    pruneIntervalMs: number;
    maxPerOwner: number;
  };
}

type WebhooksSettings = WebhooksOwnSettings & ReadModelSettings & DbSettings;

interface WebhooksVars {
  endpoints: WebhookEndpoints;
  queue: DeliveryQueue;
  sender: Sender;
  stopPruning: () => void;
}

type WebhooksThis = Service<WebhooksSettings> &
  WebhooksVars &
  ReadModelMethods &
  ReadModelVars &
  DbMethods &
  DbVars;

export interface CreateParams {
  url: string;
  events: string[];
  description?: string;
}
export interface IdParams {
  id: string;
}
export interface DeliveriesParams extends IdParams {
  limit?: number;
  cursor?: string;
}
export interface RedeliverParams extends IdParams {
  deliveryId: string;
}

const idParam = { type: "string" as const, min: 1, max: 64 };

/** A 202 whose Location is the endpoint's deliveries, where the queued one shows. */
function accepted(ctx: GatewayContext, endpointId: string): void {
  ctx.meta.$statusCode = 202;
  ctx.meta.$responseHeaders = {
    ...ctx.meta.$responseHeaders,
    Location: `/api/webhooks/${endpointId}/deliveries`,
  };
}

const WebhooksService: ServiceSchema<
  WebhooksOwnSettings & ReadModelSettings,
  ReadModelMethods & DbMethods,
  WebhooksVars & ReadModelVars & DbVars,
  WebhooksThis
> = {
  name: "webhooks",
  mixins: [
    DbMixin({ ...WEBHOOKS_COLLECTIONS, ...APPLIED_COLLECTION }),
    ReadModelMixin<WebhooksVars>({
      channels: {
        [ACTIVITY_EVENTS.recorded]: {
          // Rows that arrive together are queued in one transaction; their order does not matter.
          key: () => "rows",
          async apply(fresh, tx) {
            const rows: ActivityRow[] = [];
            let malformed = 0;
            for (const r of fresh) {
              const got = rowsOfRecorded(r.event.data);
              rows.push(...got.rows);
              malformed += got.malformed;
            }
            if (malformed > 0)
              this.logger.error({ count: malformed }, "Malformed activity rows skipped");
            await queueRows(tx, rows);
          },
        },
      },
      /** Committed: the new deliveries are due now. */
      async settled() {
        this.queue?.kick();
      },
    }),
  ],

  settings: {
    readModel: {
      group: "webhooks",
      maxInFlight: { [ACTIVITY_EVENTS.recorded]: envInt("WEBHOOKS_IN_FLIGHT", 50) },
    },
    webhooks: {
      allowPrivate: envBool("WEBHOOKS_ALLOW_PRIVATE", false),
      timeoutMs: envInt("WEBHOOKS_TIMEOUT_MS", 10_000),
      leaseMs: envInt("WEBHOOKS_LEASE_MS", 60_000),
      pollMs: envInt("WEBHOOKS_POLL_MS", 1000),
      concurrency: envInt("WEBHOOKS_CONCURRENCY", 64),
      perEndpoint: envInt("WEBHOOKS_PER_ENDPOINT", 4),
      schedule: scheduleFromEnv(
        envStr("WEBHOOKS_RETRY_DELAYS_MS"),
        envInt("WEBHOOKS_MAX_RETRY_AFTER_MS", 8 * 3600_000),
      ),
      disableAfterMs: envInt("WEBHOOKS_DISABLE_AFTER_MS", 24 * 3600_000),
      retentionMs: envInt("WEBHOOKS_RETENTION_MS", 30 * 24 * 3600_000),
      pruneIntervalMs: envInt("WEBHOOKS_PRUNE_INTERVAL_MS", 10 * 60_000),
      maxPerOwner: envInt("WEBHOOKS_MAX_PER_USER", 20),
    },
  },

  actions: {
    create: {
      openapi: {
        summary: "Register a webhook (its secret shown only here)",
        status: 201,
        response: schemas.WebhookCreated,
        errors: [422],
      },
      params: {
        $$strict: "remove",
        url: urlRule(),
        events: {
          type: "array",
          min: 1,
          max: WEBHOOK_EVENT_TYPES.length,
          items: { type: "enum", values: [...WEBHOOK_EVENT_TYPES] },
        },
        description: textRule({ max: 200, optional: true }),
      },
      async handler(ctx: GatewayContext<CreateParams>): Promise<WebhookCreated> {
        const ownerId = requireUserId(ctx);
        const { url, events, description } = ctx.params;
        try {
          await checkWebhookUrl(url, { allowPrivate: this.settings.webhooks.allowPrivate });
        } catch (err) {
          if (err instanceof UrlRefused) throw validationError("url", err.message);
          throw err;
        }
        const hook = await this.endpoints.create(ownerId, {
          url,
          events: events.includes("*") ? ["*"] : events,
          ...(description !== undefined ? { description } : {}),
        });
        return created(ctx, `/api/webhooks/${hook.id}`, hook);
      },
    },

    list: {
      openapi: { summary: "The caller's webhooks", response: schemas.page(schemas.Webhook) },
      params: { $$strict: "remove" },
      async handler(ctx: GatewayContext): Promise<{ rows: Webhook[]; total: number }> {
        const rows = await this.endpoints.list(requireUserId(ctx));
        return { rows, total: rows.length };
      },
    },

    get: {
      openapi: { summary: "A webhook of the caller's", response: schemas.Webhook },
      params: { $$strict: "remove", id: idParam },
      async handler(ctx: GatewayContext<IdParams>): Promise<Webhook> {
        return toWebhook(await this.endpoints.mine(requireUserId(ctx), ctx.params.id));
      },
    },

    remove: {
      openapi: { summary: "Delete a webhook and its deliveries", response: schemas.Webhook },
      params: { $$strict: "remove", id: idParam },
      handler(ctx: GatewayContext<IdParams>): Promise<Webhook> {
        return this.endpoints.remove(requireUserId(ctx), ctx.params.id);
      },
    },

    test: {
      openapi: {
        summary: "Send a webhook.test event",
        status: 202,
        response: schemas.WebhookDelivery,
      },
      params: { $$strict: "remove", id: idParam },
      async handler(ctx: GatewayContext<IdParams>): Promise<DeliveryRow> {
        const d = await this.endpoints.queueTest(requireUserId(ctx), ctx.params.id);
        this.queue.kick();
        accepted(ctx, ctx.params.id);
        return toDeliveryRow(d);
      },
    },

    deliveries: {
      openapi: {
        summary: "A webhook's deliveries, newest first",
        response: schemas.WebhookDeliveries,
      },
      params: {
        $$strict: "remove",
        id: idParam,
        limit: { type: "number", integer: true, convert: true, min: 1, max: 100, optional: true },
        cursor: { type: "string", min: 1, max: 64, optional: true },
      },
      handler(ctx: GatewayContext<DeliveriesParams>) {
        const { id, limit, cursor } = ctx.params;
        return this.endpoints.deliveries(requireUserId(ctx), id, limit ?? 20, cursor);
      },
    },

    redeliver: {
      openapi: {
        summary: "Send a delivery again (a new round of attempts)",
        status: 202,
        response: schemas.WebhookDelivery,
      },
      params: { $$strict: "remove", id: idParam, deliveryId: idParam },
      async handler(ctx: GatewayContext<RedeliverParams>): Promise<DeliveryRow> {
        const ep = await this.endpoints.mine(requireUserId(ctx), ctx.params.id);
        if (!(await this.queue.redeliver(ctx.params.deliveryId, ep._id)))
          throw notFound("Delivery");
        const d = await this.store<DeliveryDoc>(DELIVERIES).findOne({ _id: ctx.params.deliveryId });
        if (!d) throw notFound("Delivery");
        accepted(ctx, ep._id);
        return toDeliveryRow(d);
      },
    },

    /** Internal (the operator page, /ops): the delivery backlog and failures. */
    stats: {
      visibility: "public",
      params: { $$strict: "remove" },
      handler(_ctx: Context): Promise<WebhookStats> {
        return this.queue.stats();
      },
    },
  },

  created() {
    this.stopPruning = () => undefined;
  },

  /** After DbMixin's `started` (mixins first); the channels subscribe after this. */
  async started() {
    const s = this.settings.webhooks;
    // Private addresses are a development convenience: in production they are what SSRF reaches.
    if (s.allowPrivate && isProduction())
      throw new ConfigError("WEBHOOKS_ALLOW_PRIVATE=true is refused with NODE_ENV=production");
    this.endpoints = new WebhookEndpoints(this.database, s.maxPerOwner);
    this.sender = createSender(
      { allowPrivate: s.allowPrivate },
      s.timeoutMs,
      "mintmesh-webhooks/1",
    );
    this.queue = new DeliveryQueue(this.database, this.sender, this.logger, {
      owner: `${this.broker.nodeID}/${newId("whq")}`,
      leaseMs: s.leaseMs,
      pollMs: s.pollMs,
      concurrency: s.concurrency,
      perEndpoint: s.perEndpoint,
      schedule: s.schedule,
      disableAfterMs: s.disableAfterMs,
      retentionMs: s.retentionMs,
    });
    // On an embedded file this node holds the directory's lock: every lease left is a dead process's.
    await this.queue.start(!this.settings.db.mongoUri);
    this.stopPruning = repeat(
      s.pruneIntervalMs,
      async () => {
        const n = await this.queue.prune();
        if (n > 0) this.logger.info({ pruned: n }, "Old webhook deliveries pruned");
      },
      err => this.logger.warn({ err }, "Webhook deliveries prune failed"),
    );
  },

  async stopped() {
    this.stopPruning();
    // Attempts under way get a moment to be recorded; then their sockets close (an attempt
    // cut short is recorded as failed, or not at all: either way it is tried again).
    await this.queue?.stop(2000);
    this.sender?.close();
  },
};

export default WebhooksService;
