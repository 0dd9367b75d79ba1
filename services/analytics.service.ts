import type { Context, Service, ServiceSchema } from "moleculer";
import { DbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { DuplicateKeyError, type Doc } from "../lib/store";
import { envInt } from "../lib/env";
import { KeyedBatcher } from "../lib/batcher";
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
 *
 * Every event changes the global document, so events are applied in batches (one
 * compare-and-set per document for all the events that arrived meanwhile), with many
 * delivered at once (ANALYTICS_IN_FLIGHT); counting does not depend on their order.
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

/** An event as analytics keeps it while its batch is applied. */
interface Incoming {
  channel: string;
  eventId: string;
  targets: Target[];
}

interface AnalyticsMethods {
  consume(channel: string, raw: unknown): Promise<void>;
  applyBatch(events: Incoming[]): Promise<void>;
  targets(delta: CounterDelta): Target[];
  applyOnce(id: string, changes: Array<{ eventId: string; target: Target }>): Promise<void>;
}

interface AnalyticsVars {
  batches: KeyedBatcher<Incoming>;
}

type AnalyticsThis = Service & AnalyticsMethods & AnalyticsVars & DbMethods & DbVars;

const GLOBAL_ID = "global";
/** Seconds a summary may be served from cache (0: never cached). */
const cacheTtl = envInt("ANALYTICS_CACHE_TTL", 2);
/** Compare-and-set attempts before giving up (the message is then redelivered). */
const MAX_CAS_ATTEMPTS = 50;
/** Events of a channel handled at once; they meet in batches (see applyBatch). */
const inFlight = envInt("ANALYTICS_IN_FLIGHT", 200);

/** Adding a counted channel is one entry in ANALYTICS_RULES; this follows from it. */
const channels: ChannelSchemas<AnalyticsThis> = Object.fromEntries(
  Object.keys(ANALYTICS_RULES).map(channel => [
    channel,
    {
      group: "analytics",
      nats: FROM_THE_START,
      maxInFlight: inFlight,
      async handler(this: AnalyticsThis, ctx: Context<unknown>) {
        await this.consume(channel, ctx.params);
      },
    },
  ]),
);

const AnalyticsService: ServiceSchema<
  Record<string, never>,
  AnalyticsMethods & DbMethods,
  DbVars & AnalyticsVars
> & {
  channels: ChannelSchemas<AnalyticsThis>;
} = {
  name: "analytics",
  mixins: [DbMixin({ counters: { indexes: ["kind"] }, applied: {} })],

  channels,

  created() {
    this.batches = new KeyedBatcher(async (_key, events) => this.applyBatch(events));
  },

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
      const targets = this.targets(rule(raw.data));
      await this.batches.submit(GLOBAL_ID, { channel, eventId: raw.eventId, targets });
    },

    /** Events that arrived together: each counter document changes once for all of them. */
    async applyBatch(events: Incoming[]): Promise<void> {
      const applied = this.store<AppliedDoc>("applied");
      const counters = this.store<CounterDoc>("counters");
      // One per eventId: a redelivery may share a batch with its first delivery.
      const byId = new Map(events.map(e => [e.eventId, e]));
      const seen = new Set(
        (await applied.find({ _id: { $in: [...byId.keys()] } })).map(d => d._id),
      );
      if (seen.size > 0) this.logger.debug({ count: seen.size }, "Duplicate events skipped");
      const fresh = [...byId.values()].filter(e => !seen.has(e.eventId));

      const changes = new Map<string, Array<{ eventId: string; target: Target }>>();
      for (const e of fresh) {
        for (const target of e.targets) {
          const list = changes.get(target.id) ?? [];
          list.push({ eventId: e.eventId, target });
          changes.set(target.id, list);
        }
      }
      await Promise.all([...changes].map(([id, list]) => this.applyOnce(id, list)));
      await Promise.all(
        fresh.map(async e => {
          try {
            await applied.insert({
              _id: e.eventId,
              type: e.channel,
              appliedAt: new Date().toISOString(),
            });
          } catch (err) {
            if (!(err instanceof DuplicateKeyError)) throw err;
          }
        }),
      );
      // Also for duplicates: an earlier attempt may have died between `applied` and here.
      const pulls = new Map<string, string[]>();
      for (const e of byId.values()) {
        for (const t of e.targets) {
          const ids = pulls.get(t.id) ?? [];
          ids.push(e.eventId);
          pulls.set(t.id, ids);
        }
      }
      await Promise.all(
        [...pulls].map(([id, ids]) =>
          counters.update({ _id: id }, { $pull: { pending: { $in: ids } } }),
        ),
      );
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

    /** The changes of several events to one document, in one compare-and-set. */
    async applyOnce(
      id: string,
      changes: Array<{ eventId: string; target: Target }>,
    ): Promise<void> {
      const counters = this.store<CounterDoc>("counters");
      const applied = this.store<AppliedDoc>("applied");
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        const doc = await counters.findOne({ _id: id });
        if (!doc) {
          try {
            await counters.insert(changes[0].target.init());
          } catch (err) {
            if (!(err instanceof DuplicateKeyError)) throw err;
          }
          continue;
        }
        // Already in: an earlier attempt got this far with them.
        const pending = new Set(doc.pending);
        let todo = changes.filter(c => !pending.has(c.eventId));
        if (todo.length === 0) return;
        // A concurrent delivery of the same events may have finished and pulled them already.
        const finished = new Set(
          (await applied.find({ _id: { $in: todo.map(c => c.eventId) } })).map(d => d._id),
        );
        todo = todo.filter(c => !finished.has(c.eventId));
        if (todo.length === 0) return;
        let next: CounterDoc = doc;
        let set: Record<string, unknown> = {};
        for (const c of todo) {
          const changed = c.target.change(next);
          set = { ...set, ...changed };
          next = { ...next, ...changed } as CounterDoc;
        }
        const done = await counters.updateOne(
          { _id: id, rev: doc.rev },
          {
            $set: { ...set, rev: doc.rev + 1 },
            $push: { pending: { $each: todo.map(c => c.eventId) } },
          },
        );
        if (done) return;
      }
      throw new Error(`Counter ${id} is too contended; the event will be redelivered`);
    },
  },
};

export default AnalyticsService;
