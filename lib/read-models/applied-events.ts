import {
  insertAllIfAbsent,
  pruneOlderThan,
  type CollectionSpec,
  type Doc,
  type Store,
} from "../store/store";
import type { Received } from "./read-model";

/**
 * A read model's memory of the events it has applied, by eventId: channels deliver at
 * least once, so a redelivery is recognised here and skipped without any work. An event
 * is recorded only after its effects are written, so one that dies halfway is applied
 * again (every effect is idempotent) rather than lost.
 */

export interface AppliedDoc extends Doc {
  /** The channel it came on. */
  type: string;
  appliedAt: string;
}

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

/** Records the events as applied; one already recorded (a racing replica) is fine. */
export async function markApplied(applied: Store<AppliedDoc>, events: Received[]): Promise<void> {
  const appliedAt = new Date().toISOString();
  // One write for the batch, unless some were recorded already.
  await insertAllIfAbsent(
    applied,
    events.map(({ channel, event }) => ({ _id: event.eventId, type: channel, appliedAt })),
  );
}

/**
 * Forgets events applied before `before`, oldest first. Safe once no channel can deliver
 * them again: the retention must outlast the streams' max_age and any outbox that may
 * still re-send them. Returns how many.
 */
export function pruneApplied(applied: Store<AppliedDoc>, before: Date): Promise<number> {
  return pruneOlderThan(applied, "appliedAt", before.getTime(), { iso: true });
}
