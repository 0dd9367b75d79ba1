import type { CollectionSpec, Doc, Store } from "../store/store";
import {
  ANALYTICS_RULES,
  COUNTER_NAMES,
  addAmounts,
  addCounters,
  emptyCounters,
  type AnalyticsSummary,
  type CounterDelta,
  type Counters,
  type Received,
  type TokenAmount,
} from "./read-model";

/**
 * Analytics' counters: platform statistics counted from the domain events, persisted,
 * each event counted exactly once. No broker in here: services/analytics.service.ts
 * hands it its stores and events.
 *
 * An event changes one or two counter documents (the global counters; the volume of
 * one token). `count` runs inside its batch's transaction (mixins/read-model.mixin.ts),
 * on that transaction's store, which also records the batch's eventIds as applied: the
 * counts and the record commit together, so a redelivery is skipped and a crash counts
 * nothing. Every event changes the global document, so events are applied in batches
 * (one write per document for all the events that arrived meanwhile); counting does
 * not depend on their order.
 */

export interface CounterDoc extends Doc {
  kind: "global" | "volume" | "salesVolume";
}
interface GlobalDoc extends CounterDoc, Counters {
  kind: "global";
}
interface VolumeDoc extends CounterDoc {
  kind: "volume" | "salesVolume";
  tokenId: string;
  volume: string;
}

export const ANALYTICS_COLLECTIONS = {
  counters: { indexes: ["kind"] },
} satisfies Record<string, CollectionSpec>;

export const GLOBAL_ID = "global";

/** The collection's name, as a transaction names it. */
export const COUNTERS = "counters";

/** One document an event changes: how to create it and what to `$set` on it. */
interface Target {
  id: string;
  init(): CounterDoc;
  change(doc: CounterDoc): Record<string, unknown>;
}

export class AnalyticsCounters {
  constructor(private readonly counters: Store<CounterDoc>) {}

  /** Counts events not counted before; on a transaction's store (see the header). */
  async count(events: Received[]): Promise<void> {
    const store = this.counters;
    const changes = new Map<string, Target[]>();
    for (const { channel, event } of events)
      for (const target of targets(channel, event.data))
        changes.set(target.id, [...(changes.get(target.id) ?? []), target]);
    for (const [id, list] of changes) {
      const doc = await store.findOne({ _id: id });
      let next = doc ?? list[0].init();
      let set: Record<string, unknown> = {};
      for (const t of list) {
        const changed = t.change(next);
        set = { ...set, ...changed };
        next = { ...next, ...changed } as CounterDoc;
      }
      if (doc) await store.updateOne({ _id: id }, { $set: set });
      else await store.insert(next);
    }
  }

  async summary(): Promise<AnalyticsSummary> {
    const [global, volumes, sales] = await Promise.all([
      this.counters.findOne({ _id: GLOBAL_ID }) as Promise<GlobalDoc | null>,
      this.counters.find({ kind: "volume" }, { sort: { tokenId: 1 } }) as Promise<VolumeDoc[]>,
      this.counters.find({ kind: "salesVolume" }, { sort: { tokenId: 1 } }) as Promise<VolumeDoc[]>,
    ]);
    const totals = emptyCounters();
    for (const k of COUNTER_NAMES) totals[k] = global?.[k] ?? 0;
    const { launchesCompleted, launchesCompensated, launchesFailed, ...counts } = totals;
    return {
      ...counts,
      launches: {
        completed: launchesCompleted,
        compensated: launchesCompensated,
        failed: launchesFailed,
      },
      volumeByToken: Object.fromEntries(volumes.map(v => [v.tokenId, v.volume])),
      salesVolumeByToken: Object.fromEntries(sales.map(v => [v.tokenId, v.volume])),
    };
  }
}

/** The documents an event of `channel` changes (ANALYTICS_RULES); none for a channel not counted. */
function targets(channel: string, data: unknown): Target[] {
  const rule = ANALYTICS_RULES[channel];
  return rule ? deltaTargets(rule(data)) : [];
}

function deltaTargets(delta: CounterDelta): Target[] {
  const out: Target[] = [];
  const counted = delta.counters;
  if (counted && Object.values(counted).some(n => n !== 0)) {
    out.push({
      id: GLOBAL_ID,
      init: () => ({ _id: GLOBAL_ID, kind: "global", ...emptyCounters() }),
      change: doc => {
        const g = doc as GlobalDoc;
        const current = emptyCounters();
        for (const k of COUNTER_NAMES) current[k] = g[k] ?? 0;
        return { ...addCounters(current, counted) };
      },
    });
  }
  if (delta.volume) out.push(volumeTarget("volume", delta.volume));
  if (delta.salesVolume) out.push(volumeTarget("salesVolume", delta.salesVolume));
  return out;
}

/** The running sum of one token's amounts of one kind (`volume:<tokenId>`, …). */
function volumeTarget(kind: VolumeDoc["kind"], v: TokenAmount): Target {
  const id = `${kind}:${v.tokenId}`;
  return {
    id,
    init: () => ({ _id: id, kind, tokenId: v.tokenId, volume: "0" }),
    change: doc => ({ volume: addAmounts((doc as VolumeDoc).volume, v.amount) }),
  };
}
