import type {
  ActionSchema,
  Context,
  Service,
  ServiceSchema,
  ServiceSettingSchema,
} from "moleculer";
import {
  APPLIED,
  applyBatch,
  pruneApplied,
  type AppliedDoc,
} from "../lib/read-models/applied-events";
import type { TxStores } from "../lib/store/store";
import { domainMetrics } from "../middlewares/domain-metrics";
import { envInt } from "../lib/shared/env";
import { repeat } from "../lib/shared/repeat";
import { KeyedBatcher } from "../lib/shared/batcher";
import { FROM_THE_START } from "../middlewares/channels";
import type { DomainEvent } from "../lib/events/domain";
import { isDomainEvent, type Received } from "../lib/read-models/read-model";
import type { ChannelSchema } from "../types/moleculer";
import type { DbMethods, DbVars } from "./db.mixin";
import { defineMixin } from "./define";

/**
 * The consumer side of a read model (catalog, analytics; NFTs and market next): it
 * subscribes the service to its channels and hands it each event once, so the service
 * only says how to key and how to apply what arrives.
 *
 *  - channels: one per `channels` entry, in the consumer group `settings.readModel.group`
 *    (replicas sharing one get each event once between them), read from the start of
 *    the stream (middlewares/channels.ts FROM_THE_START), taking
 *    `settings.readModel.maxInFlight[channel]` events at once;
 *  - malformed messages: logged once and acknowledged (they never become valid, and a
 *    retry would only block the channel);
 *  - batches: events of a channel with a `key` wait while a batch of the same key is
 *    applied and go together in the next (lib/shared/batcher.ts), whatever their channel;
 *    events of a channel without one are applied alone;
 *  - one transaction per batch (this.database, lib/store/store.ts): a batch's events already
 *    applied (lib/read-models/applied-events.ts) are skipped, the rest go to their
 *    channel's `apply` (one call per distinct `apply`, so channels that share one are
 *    applied together) with the transaction's stores, and their eventIds are recorded as
 *    applied in the same transaction: the changes and the record commit together or not
 *    at all, so a crash anywhere leaves nothing half applied and the redelivery applies
 *    the batch once (`applyBatch`). Once committed, `settled` sees the whole batch. A
 *    read model whose engine writes on its own (`outsideTransaction`) gets the database
 *    instead, and its events are recorded after its idempotent `apply`.
 *
 * Use: add `...APPLIED_COLLECTION` to the service's DbMixin collections and
 * `readModel: { group, maxInFlight }` to its settings, then mix this in. The channels
 * are built in `created()` from the settings: the channels middleware reads
 * `schema.channels` in its `serviceCreated` hook, which runs right after `created()`.
 */

export interface ReadModelSettings extends ServiceSettingSchema {
  readModel: {
    /** Consumer group (default: the service's name). */
    group?: string;
    /** Events of each channel handled at once (default: the adapter's). */
    maxInFlight?: Record<string, number>;
    /** Applied eventIds are forgotten after this (ms; default below). */
    retentionMs?: number;
    /** How often they are pruned (ms; 0: never). */
    pruneIntervalMs?: number;
  };
}

const RETENTION_MS = 7 * 24 * 3600_000;

export interface ReadModelChannel<TThis> {
  /** Events with equal keys that arrive together are applied in one batch. */
  key?(event: DomainEvent): string;
  /**
   * Applies events of this channel not applied before, inside the batch's transaction:
   * only through `tx`'s stores, and nothing outside the database (it commits or not).
   */
  apply(this: TThis, fresh: Received[], tx: TxStores): Promise<void>;
}

export interface ReadModelOptions<TThis> {
  channels: Record<string, ReadModelChannel<TThis>>;
  /**
   * `apply` writes outside the batch's transaction (its engine has stores of its own:
   * the market's), so it must be idempotent; `tx` is then the database itself.
   */
  outsideTransaction?: boolean;
  /** After a batch's transaction has committed, with all of its events (each once). */
  settled?(this: TThis, batch: Received[], fresh: Received[]): Promise<void>;
}

export interface ReadModelMethods {
  /** Forgets what was applied before the retention; returns how many records went. */
  pruneApplied(): Promise<number>;
  /** What a channel handler does with a message. */
  receiveEvent(channel: string, raw: unknown): Promise<void>;
  /** Applies a batch of received events (see the header). */
  applyEvents(batch: Received[]): Promise<void>;
}

export interface ReadModelVars {
  eventBatches: KeyedBatcher<Received>;
  stopPruning: () => void;
}

export type ReadModelThis = Service<ReadModelSettings> &
  ReadModelMethods &
  ReadModelVars &
  DbMethods &
  Pick<DbVars, "database">;

/**
 * `Own`: what the service adds to `this` that its `apply` and `settled` use (its engine,
 * its methods), so they are checked against it.
 */
export function ReadModelMixin<Own = object>(
  opts: ReadModelOptions<ReadModelThis & Own>,
): Partial<ServiceSchema> {
  return defineMixin<
    ReadModelSettings,
    ReadModelMethods & DbMethods,
    ReadModelVars & Pick<DbVars, "database"> & Own
  >({
    settings: {
      readModel: {
        // 7 days: past the streams' max_age (CHANNELS_MAX_AGE_MS, 3 days), after which no
        // event can be delivered again, so a forgotten eventId cannot be applied twice.
        retentionMs: envInt("READ_MODEL_RETENTION_MS", RETENTION_MS),
        pruneIntervalMs: envInt("READ_MODEL_PRUNE_INTERVAL_MS", 10 * 60_000),
      },
    },

    methods: {
      async pruneApplied(): Promise<number> {
        const before = new Date(Date.now() - (this.settings.readModel.retentionMs ?? RETENTION_MS));
        return pruneApplied(this.store<AppliedDoc>(APPLIED), before);
      },

      async receiveEvent(channel: string, raw: unknown): Promise<void> {
        if (!isDomainEvent(raw)) {
          // It will never become valid: retrying would only block the channel.
          this.logger.error({ channel }, "Malformed event skipped");
          return;
        }
        const received: Received = { channel, event: raw };
        const key = opts.channels[channel]?.key?.(raw);
        if (key === undefined) await this.applyEvents([received]);
        else await this.eventBatches.submit(key, received);
      },

      async applyEvents(batch: Received[]): Promise<void> {
        const unique = [...new Map(batch.map(r => [r.event.eventId, r])).values()];
        const fresh = await applyBatch(
          this.database,
          unique,
          async (tx, todo) => {
            const byApply = new Map<ReadModelChannel<ReadModelThis & Own>["apply"], Received[]>();
            for (const r of todo) {
              const apply = opts.channels[r.channel].apply;
              byApply.set(apply, [...(byApply.get(apply) ?? []), r]);
            }
            for (const [apply, events] of byApply) await apply.call(this, events, tx);
          },
          { outside: opts.outsideTransaction },
        );
        if (fresh.length < unique.length)
          this.logger.debug({ count: unique.length - fresh.length }, "Duplicate events skipped");
        // Lag from each event's ledger change to now, when the read model shows it.
        domainMetrics(this.broker).readModelApplied(
          this.fullName,
          fresh.map(r => r.event),
        );
        await opts.settled?.call(this, unique, fresh);
      },
    },

    created() {
      this.eventBatches = new KeyedBatcher((_key, batch) => this.applyEvents(batch));
      const { group, maxInFlight = {} } = this.settings.readModel;
      const channels: Record<string, ChannelSchema<ReadModelThis>> = {};
      for (const channel of Object.keys(opts.channels)) {
        channels[channel] = {
          group,
          nats: FROM_THE_START,
          maxInFlight: maxInFlight[channel],
          async handler(ctx: Context<unknown>) {
            await inChannelSpan(this, ctx, channel, () => this.receiveEvent(channel, ctx.params));
          },
        };
      }
      this.schema.channels = { ...this.schema.channels, ...channels };
      this.stopPruning = () => undefined;
    },

    started() {
      this.stopPruning = repeat(
        this.settings.readModel.pruneIntervalMs ?? 0,
        async () => {
          const n = await this.pruneApplied();
          if (n > 0) this.logger.info({ pruned: n }, "Read model pruned");
        },
        err => this.logger.warn({ err }, "Read model prune failed"),
      );
    },

    stopped() {
      this.stopPruning();
    },
  });
}

/**
 * A span for each message a channel handler takes. @moleculer/channels makes the handler's
 * context from the message headers (the publishing request's id and span, middlewares/channels.ts)
 * but starts no span; its own tracing middleware would name no service and record the whole
 * event. This one is the publish span's child in the writing request's trace, named after
 * the consuming service, tagged with what finds it and nothing of the payload but its id.
 */
async function inChannelSpan(
  svc: Service<ReadModelSettings>,
  ctx: Context<unknown>,
  channel: string,
  run: () => Promise<void>,
): Promise<void> {
  if (!svc.broker.isTracingEnabled()) return run();
  const event = (ctx.params ?? {}) as Partial<DomainEvent>;
  const span = ctx.startSpan(`channel '${channel}' in '${svc.fullName}'`, {
    id: ctx.id,
    type: "channel",
    traceID: ctx.requestID,
    parentID: ctx.parentID,
    service: svc,
    sampled: ctx.tracing ?? undefined,
    tags: {
      channel,
      group: svc.settings.readModel.group ?? svc.fullName,
      nodeID: svc.broker.nodeID,
      caller: ctx.caller,
      requestID: ctx.requestID,
      eventId: typeof event.eventId === "string" ? event.eventId : undefined,
    },
  });
  ctx.tracing = span.sampled;
  try {
    await run();
  } catch (err) {
    span.setError(err as Error);
    throw err;
  } finally {
    ctx.finishSpan(span);
  }
}

/**
 * Sets the cache TTL (seconds; false: not cached) of the named actions, from a service's
 * `merged(schema)` hook: the cacher reads an action's `cache` when it registers the
 * action, right after that hook, so that is where a TTL taken from settings goes in.
 */
export function cacheTtlFromSettings(
  schema: { actions?: Record<string, unknown> },
  names: string[],
  ttl: number | false | undefined,
): void {
  if (ttl === undefined) return;
  for (const name of names) {
    const action = schema.actions?.[name] as ActionSchema | undefined;
    if (!action || typeof action !== "object") continue;
    const cache = typeof action.cache === "object" ? action.cache : {};
    action.cache = ttl === false ? false : { ...cache, ttl };
  }
}
