import type { Context, Service, ServiceSchema } from "moleculer";
import {
  DbMixin,
  DuplicateKeyError,
  type DbMethods,
  type DbVars,
  type Doc,
} from "../mixins/db.mixin";
import { envInt } from "../lib/env";
import {
  ANALYTICS_RULES,
  COUNTER_NAMES,
  addAmounts,
  addCounters,
  emptyCounters,
  FROM_THE_START,
  isDomainEvent,
  type AnalyticsSummary,
  type ChannelSchemas,
  type CounterDelta,
  type Counters,
} from "../lib/read-model";

/**
 * analytics: platform statistics from a consumer group ("analytics") on the domain
 * channels, persisted, counted exactly once in effect.
 *
 * An event changes one or two counter documents (the global counters; the volume of
 * one token). Each change is a compare-and-set on the document's `rev` that also
 * pushes the eventId into the document's `pending` list, in the same write. Then the
 * eventId is recorded in `applied`, then pulled from `pending`. So whenever a handler
 * dies, its redelivery can tell for each document whether the change is already in:
 * the eventId is in `pending`, or in `applied`. `pending` only ever holds events in
 * flight, so it stays small.
 */

interface CounterDoc extends Doc {
  kind: "global" | "volume";
  rev: number;
  pending: string[];
}
interface GlobalDoc extends CounterDoc, Counters {
  kind: "global";
}
interface VolumeDoc extends CounterDoc {
  kind: "volume";
  tokenId: string;
  volume: string;
}
interface AppliedDoc extends Doc {
  type: string;
  appliedAt: string;
}

/** One document an event changes: how to create it and what to `$set` on it. */
interface Target {
  id: string;
  init(): CounterDoc;
  change(doc: CounterDoc): Record<string, unknown>;
}

interface AnalyticsMethods {
  consume(channel: string, raw: unknown): Promise<void>;
  targets(delta: CounterDelta): Target[];
  applyOnce(target: Target, eventId: string): Promise<void>;
}

type AnalyticsThis = Service & AnalyticsMethods & DbMethods & DbVars;

const GLOBAL_ID = "global";
/** Seconds a summary may be served from cache (0: never cached). */
const cacheTtl = envInt("ANALYTICS_CACHE_TTL", 2);
/** Compare-and-set attempts before giving up (the message is then redelivered). */
const MAX_CAS_ATTEMPTS = 50;

/** Adding a counted channel is one entry in ANALYTICS_RULES; this follows from it. */
const channels: ChannelSchemas<AnalyticsThis> = Object.fromEntries(
  Object.keys(ANALYTICS_RULES).map(channel => [
    channel,
    {
      group: "analytics",
      nats: FROM_THE_START,
      async handler(this: AnalyticsThis, ctx: Context<unknown>) {
        await this.consume(channel, ctx.params);
      },
    },
  ]),
);

const AnalyticsService: ServiceSchema<
  Record<string, never>,
  AnalyticsMethods & DbMethods,
  DbVars
> & {
  channels: ChannelSchemas<AnalyticsThis>;
} = {
  name: "analytics",
  mixins: [DbMixin({ counters: { indexes: ["kind"] }, applied: {} })],

  channels,

  actions: {
    summary: {
      params: { $$strict: "remove" },
      cache: cacheTtl > 0 ? { ttl: cacheTtl } : false,
      async handler(): Promise<AnalyticsSummary> {
        const counters = this.store<CounterDoc>("counters");
        const [global, volumes] = await Promise.all([
          counters.findOne({ _id: GLOBAL_ID }) as Promise<GlobalDoc | null>,
          counters.find({ kind: "volume" }, { sort: { tokenId: 1 } }) as Promise<VolumeDoc[]>,
        ]);
        const totals = emptyCounters();
        for (const k of COUNTER_NAMES) totals[k] = global?.[k] ?? 0;
        return {
          ...totals,
          volumeByToken: Object.fromEntries(volumes.map(v => [v.tokenId, v.volume])),
        };
      },
    },
  },

  methods: {
    async consume(channel: string, raw: unknown): Promise<void> {
      const rule = ANALYTICS_RULES[channel];
      if (!rule) return;
      if (!isDomainEvent(raw)) {
        // It will never become valid: retrying would only block the channel.
        this.logger.error({ channel }, "Malformed event skipped");
        return;
      }
      const { eventId } = raw;
      const targets = this.targets(rule(raw.data));
      const applied = this.store<AppliedDoc>("applied");
      const counters = this.store<CounterDoc>("counters");

      if (!(await applied.findOne({ _id: eventId }))) {
        for (const t of targets) await this.applyOnce(t, eventId);
        try {
          await applied.insert({
            _id: eventId,
            type: channel,
            appliedAt: new Date().toISOString(),
          });
        } catch (err) {
          if (!(err instanceof DuplicateKeyError)) throw err;
        }
      } else {
        this.logger.debug({ eventId, channel }, "Duplicate event skipped");
      }
      // Also on a duplicate: an earlier attempt may have died between `applied` and here.
      for (const t of targets)
        await counters.update({ _id: t.id }, { $pull: { pending: eventId } });
    },

    targets(delta: CounterDelta): Target[] {
      const out: Target[] = [];
      const counted = delta.counters;
      if (counted && Object.values(counted).some(n => n !== 0)) {
        out.push({
          id: GLOBAL_ID,
          init: () => ({ _id: GLOBAL_ID, kind: "global", rev: 0, pending: [], ...emptyCounters() }),
          change: doc => {
            const g = doc as GlobalDoc;
            const current = emptyCounters();
            for (const k of COUNTER_NAMES) current[k] = g[k] ?? 0;
            return { ...addCounters(current, counted) };
          },
        });
      }
      const volume = delta.volume;
      if (volume) {
        const id = `volume:${volume.tokenId}`;
        out.push({
          id,
          init: () => ({
            _id: id,
            kind: "volume",
            tokenId: volume.tokenId,
            volume: "0",
            rev: 0,
            pending: [],
          }),
          change: doc => ({ volume: addAmounts((doc as VolumeDoc).volume, volume.amount) }),
        });
      }
      return out;
    },

    async applyOnce(target: Target, eventId: string): Promise<void> {
      const counters = this.store<CounterDoc>("counters");
      const applied = this.store<AppliedDoc>("applied");
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        const doc = await counters.findOne({ _id: target.id });
        if (!doc) {
          try {
            await counters.insert(target.init());
          } catch (err) {
            if (!(err instanceof DuplicateKeyError)) throw err;
          }
          continue;
        }
        if (doc.pending.includes(eventId)) return; // an earlier attempt got this far
        // A concurrent delivery of the same event may have finished and pulled it already.
        if (await applied.findOne({ _id: eventId })) return;
        const done = await counters.updateOne(
          { _id: target.id, rev: doc.rev },
          { $set: { ...target.change(doc), rev: doc.rev + 1 }, $push: { pending: eventId } },
        );
        if (done) return;
      }
      throw new Error(`Counter ${target.id} is too contended; the event will be redelivered`);
    },
  },
};

export default AnalyticsService;
