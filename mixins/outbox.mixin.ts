import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { channelPublisher } from "../middlewares/channels";
import { domainMetrics } from "../middlewares/domain-metrics";
import { envInt } from "../lib/shared/env";
import {
  OUTBOX_COLLECTION,
  Outbox,
  type OutboxDoc,
  type OutboxOptions,
} from "../lib/messaging/outbox";
import { repeat } from "../lib/shared/repeat";
import { currentTraceParent } from "../middlewares/request-context.middleware";
import type { CollectionSpec } from "../lib/store/store";
import { DbMixin, type DbMethods } from "./db.mixin";
import { defineMixin } from "./define";

/**
 * Gives a write model its outbox (lib/messaging/outbox.ts) on the broker's channels.
 *
 * Use: add `...OUTBOX_COLLECTION` to the service's DbMixin collections, mix this in, call `this.openOutbox()` in the service's `started` and hand the outbox
 * to the engines that write events, then `this.outbox.start()` at the end of `started`
 * (after the service's own recovery, so recovered events go out too).
 */

export interface OutboxSettings extends ServiceSettingSchema {
  outbox: OutboxOptions;
}

export interface OutboxVars {
  outbox: Outbox;
  /** Stops the outbox backlog gauge (mintmesh.outbox.backlog). */
  stopBacklogGauge?: () => void;
}

export interface OutboxMethods {
  /** Opens `this.outbox` on the service's `outbox` store; call it in the service's `started`. */
  openOutbox(): Outbox;
}

/**
 * The mixins of a service whose changes leave through an outbox: its stores with the
 * outbox's collection among them, and the relay at OUTBOX_INTERVAL_MS (one setting for all).
 */
export function storesWithOutbox(
  collections: Record<string, CollectionSpec>,
): Array<Partial<ServiceSchema>> {
  return [
    DbMixin({ ...collections, ...OUTBOX_COLLECTION }),
    OutboxMixin({ intervalMs: envInt("OUTBOX_INTERVAL_MS", 1000) }),
  ];
}

export function OutboxMixin(options: OutboxOptions = {}): Partial<ServiceSchema> {
  return defineMixin<OutboxSettings, DbMethods & OutboxMethods, OutboxVars>({
    settings: { outbox: options },

    methods: {
      // Not in this mixin's `started`: Moleculer runs the mixins' `started` handlers in
      // reverse order of `mixins`, so DbMixin's stores may not be open yet there.
      openOutbox(): Outbox {
        this.outbox = new Outbox(
          this.store<OutboxDoc>("outbox"),
          channelPublisher(this.broker, this.fullName),
          this.logger,
          // Each entry keeps the request that wrote it, so its publish joins that request's trace.
          { ...this.settings.outbox, traceParent: currentTraceParent },
        );
        // Domain metrics count each change once, where its event is first written.
        const metrics = domainMetrics(this.broker);
        const outbox = this.outbox;
        outbox.onWritten = event => metrics.eventWritten(event);
        this.stopBacklogGauge?.();
        if (this.broker.isMetricsEnabled())
          this.stopBacklogGauge = repeat(
            this.settings.outbox.intervalMs ?? 1000,
            async () => metrics.outboxBacklog(this.fullName, (await outbox.stats()).unsent),
            err => this.logger.debug({ err }, "Outbox backlog not measured"),
          );
        return this.outbox;
      },
    },

    async stopped() {
      this.stopBacklogGauge?.();
      await this.outbox?.stop();
    },
  });
}
