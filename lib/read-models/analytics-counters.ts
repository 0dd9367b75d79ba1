import { appliedAmong, type AppliedDoc } from "./applied-events";
import { insertIfAbsent, type CollectionSpec, type Doc, type Store } from "../store/store";
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
 * each event counted exactly once in effect. No broker in here:
 * services/analytics.service.ts hands it its stores and events.
 *
 * An event changes one or two counter documents (the global counters; the volume of
 * one token). Each change is a compare-and-set on the document's `rev` that also
 * pushes the eventId into the document's `pending` list, in the same write. Then the
 * eventId is recorded in `applied` (by the caller, lib/read-models/applied-events.ts), then pulled
 * from `pending` (`release`). So whenever a handler dies, its redelivery can tell for
 * each document whether the change is already in: the eventId is in `pending`, or in
 * `applied`. `pending` only ever holds events in flight, so it stays small.
 *
 * Every event changes the global document, so events are applied in batches (one
 * compare-and-set per document for all the events that arrived meanwhile); counting
 * does not depend on their order.
 */

export interface CounterDoc extends Doc {
  kind: "global" | "volume" | "salesVolume";
  rev: number;
  pending: string[];
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

/** One document an event changes: how to create it and what to `$set` on it. */
interface Target {
  id: string;
  init(): CounterDoc;
  change(doc: CounterDoc): Record<string, unknown>;
}

interface Change {
  eventId: string;
  target: Target;
}

/** Compare-and-set attempts before giving up (the event is then redelivered). */
const MAX_CAS_ATTEMPTS = 50;

export class AnalyticsCounters {
  constructor(
    private readonly counters: Store<CounterDoc>,
    private readonly applied: Store<AppliedDoc>,
  ) {}

  /** Counts events not recorded as applied: each counter document changes once for all of them. */
  async count(events: Received[]): Promise<void> {
    const changes = new Map<string, Change[]>();
    for (const { channel, event } of events) {
      for (const target of targets(channel, event.data)) {
        const list = changes.get(target.id) ?? [];
        list.push({ eventId: event.eventId, target });
        changes.set(target.id, list);
      }
    }
    await Promise.all([...changes].map(([id, list]) => this.applyOnce(id, list)));
  }

  /**
   * Pulls the events from `pending` once they are recorded as applied. Also for
   * duplicates: an earlier attempt may have died between `applied` and here.
   */
  async release(events: Received[]): Promise<void> {
    const pulls = new Map<string, string[]>();
    for (const { channel, event } of events) {
      for (const t of targets(channel, event.data)) {
        const ids = pulls.get(t.id) ?? [];
        ids.push(event.eventId);
        pulls.set(t.id, ids);
      }
    }
    await Promise.all(
      [...pulls].map(([id, ids]) =>
        this.counters.update({ _id: id }, { $pull: { pending: { $in: ids } } }),
      ),
    );
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

  /** The changes of several events to one document, in one compare-and-set. */
  private async applyOnce(id: string, changes: Change[]): Promise<void> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const doc = await this.counters.findOne({ _id: id });
      if (!doc) {
        await insertIfAbsent(this.counters, changes[0].target.init());
        continue;
      }
      // Already in: an earlier attempt got this far with them.
      const pending = new Set(doc.pending);
      let todo = changes.filter(c => !pending.has(c.eventId));
      if (todo.length === 0) return;
      // A concurrent delivery of the same events may have finished and pulled them already.
      const finished = await appliedAmong(
        this.applied,
        todo.map(c => c.eventId),
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
      const done = await this.counters.updateOne(
        { _id: id, rev: doc.rev },
        {
          $set: { ...set, rev: doc.rev + 1 },
          $push: { pending: { $each: todo.map(c => c.eventId) } },
        },
      );
      if (done) return;
    }
    throw new Error(`Counter ${id} is too contended; the event will be redelivered`);
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
      init: () => ({ _id: GLOBAL_ID, kind: "global", rev: 0, pending: [], ...emptyCounters() }),
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
    init: () => ({ _id: id, kind, tokenId: v.tokenId, volume: "0", rev: 0, pending: [] }),
    change: doc => ({ volume: addAmounts((doc as VolumeDoc).volume, v.amount) }),
  };
}
