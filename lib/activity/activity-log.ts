import type { ActivityRow, ActivityType } from "../events/activity";
import type { DomainEvent } from "../events/domain";
import { validationError } from "../shared/errors";
import type { CollectionSpec, Doc, FindOptions, Query, Store, TxStores } from "../store/store";
import { decodeCursor, encodeCursor, rowsOf, toActivityRow, type DraftRow } from "./rows";

/**
 * The activity history: rows kept forever (no retention: it is the product's record), in
 * pages by an opaque cursor. Each batch of rows takes its sequence numbers from one counter
 * document, incremented in the transaction that inserts the rows, so a row committed
 * later always has a greater cursor than every row committed before it (the counter's
 * update also serializes replicas sharing one MongoDB): a reader that has seen cursor X
 * never later finds a new row below X, which is why paging while events arrive neither
 * skips nor repeats a row. Every page is one index range (compound indexes below, equality
 * fields then `seq`), so a page costs the same with a million rows stored as with ten.
 */

export const ACTIVITY = "activity";
export const ACTIVITY_SEQ = "activitySeq";

/** A row as stored: the row's fields (ActivityRow) but its cursor, which is `seq` encoded. */
export interface ActivityDoc extends Doc, Omit<ActivityRow, "id" | "cursor"> {
  /** The row id (lib/activity/rows.ts rowId): unique, so a late redelivery never repeats it. */
  _id: string;
  seq: number;
  eventId: string;
  /** 1 on the event's lead row, absent on the others (internal). */
  lead?: 1;
  /** On a transfer's lead row. */
  transferId?: string;
}

interface SeqDoc extends Doc {
  value: number;
}

const SEQ_ID = "rows";

export const ACTIVITY_COLLECTIONS: Record<string, CollectionSpec> = {
  [ACTIVITY]: {
    sparse: ["transferId"],
    compound: [
      ["actorId", "seq"],
      ["actorId", "type", "seq"],
      ["actorId", "tokenId", "seq"],
      ["actorId", "tokenId", "type", "seq"],
      ["actorId", "collectionId", "seq"],
      ["actorId", "collectionId", "type", "seq"],
      ["tokenId", "lead", "seq"],
      ["tokenId", "lead", "type", "seq"],
      ["nftId", "lead", "seq"],
      ["nftId", "lead", "type", "seq"],
      ["collectionId", "lead", "seq"],
      ["collectionId", "lead", "type", "seq"],
    ],
  },
  [ACTIVITY_SEQ]: {},
};

export interface ListQuery {
  actorId?: string;
  tokenId?: string;
  nftId?: string;
  collectionId?: string;
  types?: ActivityType[];
  order?: "asc" | "desc";
  limit?: number;
  cursor?: string;
}

export interface ActivityPage {
  rows: ActivityRow[];
  next: string | null;
}

/** Rows as they were inserted: what the outbox and the live hint tell of. */
export interface Recorded {
  rows: ActivityRow[];
  actorIds: string[];
}

export class ActivityLog {
  constructor(private readonly rows: Store<ActivityDoc>) {}

  /**
   * Inserts the rows of `events` inside `tx` (the transaction that records them as
   * applied): rows already stored (a redelivery after the applied-events retention) are
   * skipped, the rest numbered from the counter in event order.
   */
  static async record(tx: TxStores, events: DomainEvent[]): Promise<Recorded> {
    const drafts = events.flatMap(rowsOf);
    if (drafts.length === 0) return { rows: [], actorIds: [] };
    const store = tx.store<ActivityDoc>(ACTIVITY);
    const existing = new Set<string>();
    for (let i = 0; i < drafts.length; i += 500) {
      const ids = drafts.slice(i, i + 500).map(d => d.id);
      for (const d of await store.find({ _id: { $in: ids } })) existing.add(d._id);
    }
    const fresh = drafts.filter(d => !existing.has(d.id));
    if (fresh.length === 0) return { rows: [], actorIds: [] };
    const last = await nextSeq(tx.store<SeqDoc>(ACTIVITY_SEQ), fresh.length);
    const first = last - fresh.length + 1;
    const docs = fresh.map((d, i) => toDoc(d, first + i));
    await store.insertMany(docs);
    return {
      rows: docs.map(toActivityRow),
      actorIds: [...new Set(docs.map(d => d.actorId))],
    };
  }

  /** One page (the activity.list contract, docs/api.md "Activity"). */
  async list(q: ListQuery): Promise<ActivityPage> {
    const limit = q.limit ?? 20;
    const asc = q.order === "asc";
    const parts = await Promise.all(
      pageQueries(q).map(({ query, options }) => this.rows.find(query, options)),
    );
    // One range per type, merged (with one, already in order).
    const docs =
      parts.length === 1
        ? parts[0]!
        : parts
            .flat()
            .sort((a, b) => (asc ? a.seq - b.seq : b.seq - a.seq))
            .slice(0, limit + 1);
    const page = docs.slice(0, limit);
    const more = docs.length > limit;
    return {
      rows: page.map(toActivityRow),
      next: more && page.length > 0 ? encodeCursor(page[page.length - 1]!.seq) : null,
    };
  }

  /** A transfer's row, by its id (the sender's row: every transfer has one). */
  async transfer(tokenId: string, transferId: string): Promise<ActivityRow | null> {
    const doc = await this.rows.findOne({ transferId });
    return doc && doc.tokenId === tokenId ? toActivityRow(doc) : null;
  }
}

/**
 * The store queries of one page: each an index range (a compound index of
 * ACTIVITY_COLLECTIONS, equality fields then `seq`) read in order for `limit + 1` rows (the
 * one past the page says whether more follow). With types, one query per type: each is
 * exact, where `type IN (…)` would read and sort every row of the others.
 */
export function pageQueries(q: ListQuery): Array<{ query: Query; options: FindOptions }> {
  if (![q.actorId, q.tokenId, q.nftId, q.collectionId].some(v => v !== undefined))
    throw validationError("actorId", "One of actorId, tokenId, nftId, collectionId is required");
  const order = q.order ?? "desc";
  const base: Query = {};
  if (q.actorId !== undefined) base.actorId = q.actorId;
  if (q.tokenId !== undefined) base.tokenId = q.tokenId;
  if (q.nftId !== undefined) base.nftId = q.nftId;
  if (q.collectionId !== undefined) base.collectionId = q.collectionId;
  // An NFT's, a collection's or a token's history shows each event once: its lead row.
  // An account's shows all of its own.
  if (q.actorId === undefined) base.lead = 1;
  if (q.cursor !== undefined) {
    const seq = decodeCursor(q.cursor);
    if (seq === null) throw validationError("cursor", "Not a cursor of this list");
    base.seq = order === "asc" ? { $gt: seq } : { $lt: seq };
  }
  const options: FindOptions = {
    sort: { seq: order === "asc" ? 1 : -1 },
    limit: (q.limit ?? 20) + 1,
  };
  const types = [...new Set(q.types ?? [])];
  if (types.length === 0) return [{ query: base, options }];
  return types.map(type => ({ query: { ...base, type }, options }));
}

/** Takes `n` numbers from the counter; the last one taken. */
async function nextSeq(seq: Store<SeqDoc>, n: number): Promise<number> {
  const updated = await seq.updateOne({ _id: SEQ_ID }, { $inc: { value: n } });
  if (updated) return updated.value;
  // The first rows ever: a racing first insert fails the transaction with
  // DuplicateKeyError, and its retry finds the counter.
  await seq.insert({ _id: SEQ_ID, value: n });
  return n;
}

function toDoc(d: DraftRow, seq: number): ActivityDoc {
  const doc: ActivityDoc = {
    _id: d.id,
    seq,
    eventId: d.eventId,
    type: d.type,
    at: d.at,
    actorId: d.actorId,
    data: d.data,
  };
  if (d.tokenId !== undefined) doc.tokenId = d.tokenId;
  if (d.nftId !== undefined) doc.nftId = d.nftId;
  if (d.collectionId !== undefined) doc.collectionId = d.collectionId;
  if (d.lead) doc.lead = 1;
  if (d.transferId !== undefined) doc.transferId = d.transferId;
  return doc;
}
