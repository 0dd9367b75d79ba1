import type { CollectionSpec, Database, Doc, Store, TxStores } from "../store/store";
import { insertAllIfAbsent, pruneOlderThan } from "../store/store";
import type { Received } from "./read-model";

/**
 * A read model's memory of the events it has applied, by eventId: channels deliver at
 * least once, so a redelivery is recognised here and skipped without any work. An event
 * is recorded in the transaction that applies it (mixins/read-model.mixin.ts): recorded
 * exactly when its effects are committed, so exactly-once is the transaction's.
 */

export interface AppliedDoc extends Doc {
  /** The channel it came on. */
  type: string;
  appliedAt: string;
}

/** The collection's name, as a transaction names it. */
export const APPLIED = "applied";

/** Looked up by `_id`; pruned by `appliedAt`. */
export const APPLIED_COLLECTION: Record<string, CollectionSpec> = {
  applied: { indexes: ["appliedAt"] },
};

/** Which of `eventIds` are recorded as applied. */
export async function appliedAmong(
  applied: Store<AppliedDoc>,
  eventIds: string[],
): Promise<Set<string>> {
  if (eventIds.length === 0) return new Set();
  const docs = await applied.find({ _id: { $in: eventIds } });
  return new Set(docs.map(d => d._id));
}

/**
 * Records the events as applied, in one write, inside the transaction that applies them:
 * one recorded already (a racing replica) throws DuplicateKeyError and rolls it back.
 */
export async function markApplied(applied: Store<AppliedDoc>, events: Received[]): Promise<void> {
  if (events.length === 0) return;
  await applied.insertMany(records(events));
}

function records(events: Received[]): AppliedDoc[] {
  const appliedAt = new Date().toISOString();
  return events.map(({ channel, event }) => ({ _id: event.eventId, type: channel, appliedAt }));
}

/**
 * Applies a batch once, as one transaction of `db`: its events already recorded as
 * applied (and repeats within it) are skipped, `apply` makes the changes of the rest on
 * the transaction's stores, and they are recorded as applied with them. A crash anywhere
 * commits none of it, so the redelivery applies the batch in full, once. Resolves to the
 * events applied now (none when all were applied before).
 *
 * `outside`: for a read model whose `apply` writes through its own engine, outside any
 * transaction of ours (the market's): then the events are recorded after `apply`, so one
 * that dies halfway is applied again, and its `apply` must be idempotent.
 */
export async function applyBatch(
  db: Database,
  batch: Received[],
  apply: (tx: TxStores, fresh: Received[]) => Promise<void>,
  opts: { outside?: boolean } = {},
): Promise<Received[]> {
  // One per eventId: a redelivery may share a batch with its first delivery.
  const unique = [...new Map(batch.map(r => [r.event.eventId, r])).values()];
  const run = async (tx: TxStores): Promise<Received[]> => {
    const applied = tx.store<AppliedDoc>(APPLIED);
    const seen = await appliedAmong(
      applied,
      unique.map(r => r.event.eventId),
    );
    const fresh = unique.filter(r => !seen.has(r.event.eventId));
    if (fresh.length > 0) await apply(tx, fresh);
    // Outside a transaction a racing replica's record is fine: both applied the same.
    if (opts.outside) await insertAllIfAbsent(applied, records(fresh));
    else await markApplied(applied, fresh);
    return fresh;
  };
  return opts.outside ? run(db) : db.transaction(run);
}

/**
 * Forgets events applied before `before`, oldest first. Safe once no channel can deliver
 * them again: the retention must outlast the streams' max_age and any outbox that may
 * still re-send them. Returns how many.
 */
export function pruneApplied(applied: Store<AppliedDoc>, before: Date): Promise<number> {
  return pruneOlderThan(applied, "appliedAt", before.getTime(), { iso: true });
}
