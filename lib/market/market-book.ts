import { conflict, forbidden, notFound, validationError } from "../shared/errors";
import { domainEvent, type DomainEvent, type EventName } from "../events/domain";
import {
  MARKET_EVENTS,
  type Listing,
  type ListingEvent,
  type ListingState,
} from "../events/market";
import { newId } from "../shared/ids";
import { commitWithEvents, type OutboxWriter } from "../messaging/outbox";
import type { CollectionSpec, Database, Doc, Store, TxStores } from "../store/store";

/**
 * The marketplace's listings: an NFT offered for a price in a platform token. No broker
 * in here (the market service checks ownership and tokens through their services).
 *
 *  - One live listing per NFT: `liveNftId` is set while a listing is active or reserved,
 *    under a unique sparse index, so of two listings racing for one NFT one is refused.
 *  - Every state change is a compare-and-set on the listing's `version` from the state
 *    it requires: active → reserved (a buyer's saga holds it) → sold, or back to active
 *    when the sale is undone; active → cancelled by its seller, or because its NFT moved
 *    away outside a sale; active → expired at its `expiresAt`.
 *  - Expiry is exact at every read: past its `expiresAt` an active listing shows
 *    `expired`, cannot be reserved, and does not hold its NFT against a new listing
 *    (which expires it first, in its own transaction). `expireDue` (the service runs it
 *    on a timer) writes the state and its market.expired event for the rest. A listing
 *    reserved before its expiry is sold, or active again and then expired, as usual.
 *  - Each change is one transaction of the market database with its event (market.listed
 *    / sold / cancelled) in the outbox: a crash leaves neither without the other.
 */

type MarketEventType = EventName<typeof MARKET_EVENTS>;

export interface ListingDoc extends Doc, Omit<Listing, "id" | "expiresAt"> {
  /** Absent on listings written before listings could expire. */
  expiresAt?: string | null;
  version: number;
  createKey: string;
  /** The NFT while this listing is live (active or reserved): unique among listings. */
  liveNftId?: string;
  /** The saga holding a reserved listing, and its buyer. */
  sagaId?: string;
  buyerId?: string;
  /** The royalty a sale paid and to whom (set when it is sold): market.sold tells it. */
  royalty?: { to: string; amount: string };
  /** When it was sold, cancelled or expired: the market's retention counts from it. */
  endedAt?: string;
}

export const MARKET_COLLECTIONS: Record<"listings", CollectionSpec> = {
  listings: {
    unique: ["createKey"],
    uniqueSparse: ["liveNftId"],
    indexes: ["state", "sellerId", "collectionId", "nftId", "expiresAt"],
    sparse: ["endedAt"],
  },
};

export interface NewListing {
  /** The NFT as its service knows it now: who owns it decides who may list it. */
  nft: { id: string; collectionId: string; ownerId: string };
  priceTokenId: string;
  price: string;
  /** ISO time in the future; absent: no expiry. */
  expiresAt?: string;
}

/** The furthest a listing may expire: a year ahead. */
export const MAX_LISTING_MS = 366 * 24 * 3600_000;

export interface ListingFilter {
  state?: ListingState;
  collection?: string;
  seller?: string;
}

/** An active listing whose time is up, whether or not `expireDue` has written it yet. */
export const isLapsed = (d: Pick<ListingDoc, "state" | "expiresAt">, now = Date.now()): boolean =>
  d.state === "active" && d.expiresAt != null && Date.parse(d.expiresAt) <= now;

export const toListing = (d: ListingDoc, now = Date.now()): Listing => ({
  id: d._id,
  nftId: d.nftId,
  collectionId: d.collectionId,
  sellerId: d.sellerId,
  priceTokenId: d.priceTokenId,
  price: d.price,
  state: isLapsed(d, now) ? "expired" : d.state,
  expiresAt: d.expiresAt ?? null,
  createdAt: d.createdAt,
  updatedAt: d.updatedAt,
});

/** A change of a listing's state: from the state it requires, with its event if any. */
interface Move {
  from: ListingState;
  to: ListingState;
  fields?: Partial<ListingDoc>;
  event?: MarketEventType;
  /** The saga the listing must be reserved by. */
  sagaId?: string;
}

const EXPIRE: Move = { from: "active", to: "expired", event: MARKET_EVENTS.expired };

const listingsIn = (tx: TxStores): Store<ListingDoc> => tx.store<ListingDoc>("listings");

export class MarketBook {
  private readonly listings: Store<ListingDoc>;

  constructor(
    private readonly db: Database,
    private readonly outbox: OutboxWriter,
  ) {
    this.listings = listingsIn(db);
  }

  /**
   * Lists an NFT for a price above 0 (400), by its owner only (403); 409 while it is
   * listed already. The price token's existence is the caller's to check (another service).
   */
  async list(sellerId: string, key: string, p: NewListing): Promise<Listing> {
    if (p.price === "0") throw validationError("price", "must be greater than 0");
    if (p.expiresAt !== undefined) {
      const at = Date.parse(p.expiresAt);
      if (Number.isNaN(at)) throw validationError("expiresAt", "must be an ISO 8601 date-time");
      if (at <= Date.now()) throw validationError("expiresAt", "must be in the future");
      if (at > Date.now() + MAX_LISTING_MS)
        throw validationError("expiresAt", "must be within a year");
    }
    if (p.nft.ownerId !== sellerId) throw forbidden("Only the NFT's owner may list it");
    const now = new Date().toISOString();
    const doc: ListingDoc = {
      _id: newId("lst"),
      nftId: p.nft.id,
      collectionId: p.nft.collectionId,
      priceTokenId: p.priceTokenId,
      price: p.price,
      sellerId,
      state: "active",
      expiresAt: p.expiresAt !== undefined ? new Date(p.expiresAt).toISOString() : null,
      createdAt: now,
      updatedAt: now,
      version: 1,
      createKey: key,
      liveNftId: p.nft.id,
    };
    return this.change(async (listings, events) => {
      const first = await listings.findOne({ createKey: key });
      if (first) return toListing(first); // the same call again
      // One live listing per NFT (the unique index on liveNftId holds it across processes);
      // one whose time is up gives way, expired with its event in this transaction.
      const live = await listings.findOne({ liveNftId: p.nft.id });
      if (live && isLapsed(live)) await moveIn(listings, events, live, EXPIRE);
      else if (live)
        throw conflict("The NFT is listed already", [
          { field: "nftId", message: "already listed" },
        ]);
      await listings.insert(doc);
      events.push(listingEvent(MARKET_EVENTS.listed, doc));
      return toListing(doc);
    });
  }

  async get(id: string): Promise<Listing> {
    return toListing(await requireIn(this.listings, id));
  }

  async find(f: ListingFilter, limit: number, offset: number) {
    const query: Record<string, unknown> = {};
    const now = new Date();
    // What a reader sees as expired is expired, written yet or not (toListing).
    const unexpired = {
      $or: [{ expiresAt: { $exists: false } }, { expiresAt: { $gt: now.toISOString() } }],
    };
    if (f.state === "active") Object.assign(query, { state: "active" }, unexpired);
    else if (f.state === "expired")
      query.$or = [
        { state: "expired" },
        { state: "active", expiresAt: { $lte: now.toISOString() } },
      ];
    else if (f.state) query.state = f.state;
    if (f.collection) query.collectionId = f.collection;
    if (f.seller) query.sellerId = f.seller;
    const [rows, total] = await Promise.all([
      this.listings.find(query, { sort: { createdAt: -1, _id: 1 }, limit, offset }),
      this.listings.count(query),
    ]);
    return { rows: rows.map(d => toListing(d, now.getTime())), total };
  }

  /** The seller withdraws it: 403 for anyone else, 409 unless it is active. */
  cancel(id: string, callerId: string): Promise<Listing> {
    return this.move(id, cur => {
      if (cur.sellerId !== callerId) throw forbidden("Only the seller may cancel the listing");
      if (cur.state === "cancelled") return null;
      return { from: "active", to: "cancelled", event: MARKET_EVENTS.cancelled };
    });
  }

  /** A buyer's saga holds an active listing; a repeat by the same saga answers it again. */
  reserve(id: string, sagaId: string, buyerId: string): Promise<Listing> {
    return this.move(id, cur => {
      if (cur.state === "reserved" && cur.sagaId === sagaId) return null;
      if (cur.sellerId === buyerId) throw forbidden("The seller cannot buy their own listing");
      if (isLapsed(cur)) throw conflict("The listing has expired");
      return { from: "active", to: "reserved", fields: { sagaId, buyerId } };
    });
  }

  /** Undoes a reservation of this saga (the sale failed): active again. */
  release(id: string, sagaId: string): Promise<Listing> {
    return this.move(id, cur => {
      if (cur.state !== "reserved" || cur.sagaId !== sagaId) return null;
      const fields = { sagaId: undefined, buyerId: undefined };
      return { from: "reserved", to: "active", fields, sagaId };
    });
  }

  /** The sale is complete; `royalty` is what it paid the collection's owner, if anything. */
  sell(id: string, sagaId: string, royalty?: { to: string; amount: string }): Promise<Listing> {
    return this.move(id, cur => {
      if (cur.state === "sold" && cur.sagaId === sagaId) return null;
      const fields = royalty ? { royalty } : undefined;
      return { from: "reserved", to: "sold", event: MARKET_EVENTS.sold, sagaId, fields };
    });
  }

  /**
   * Expires the active listings whose time is up, at most `limit` of them, each in a
   * transaction of its own with its market.expired event. Returns how many it expired;
   * a listing another node changed meanwhile is left to it.
   */
  async expireDue(limit = 100): Promise<number> {
    const due = await this.listings.find(
      { state: "active", expiresAt: { $lte: new Date().toISOString() } },
      { sort: { expiresAt: 1 }, limit },
    );
    let n = 0;
    for (const l of due) {
      const done = await this.change(async (listings, events) => {
        const cur = await listings.findOne({ _id: l._id });
        if (!cur || !isLapsed(cur)) return false;
        await moveIn(listings, events, cur, EXPIRE);
        return true;
      });
      if (done) n++;
    }
    return n;
  }

  /**
   * The NFT moved to `owner` outside a sale: an active listing of another seller can no
   * longer be bought, and shows `cancelled`. Returns the listings cancelled.
   */
  nftMoved(nftId: string, owner: string): Promise<number> {
    return this.change(async (listings, events) => {
      let n = 0;
      for (const l of await listings.find({ nftId, state: "active" })) {
        if (l.sellerId === owner) continue;
        await moveIn(listings, events, l, {
          from: "active",
          to: "cancelled",
          event: MARKET_EVENTS.cancelled,
        });
        n++;
      }
      return n;
    });
  }

  /**
   * One state change in one transaction: `decide` sees the listing as it is and answers
   * the move to make, or null to answer the listing as it is (a repeat).
   */
  private move(id: string, decide: (cur: ListingDoc) => Move | null): Promise<Listing> {
    return this.change(async (listings, events) => {
      const cur = await requireIn(listings, id);
      const m = decide(cur);
      return toListing(m ? await moveIn(listings, events, cur, m) : cur);
    });
  }

  /** `fn`'s writes and the events it pushes commit together, then are sent. */
  private change<R>(
    fn: (listings: Store<ListingDoc>, events: DomainEvent[]) => Promise<R>,
  ): Promise<R> {
    return commitWithEvents(this.db, this.outbox, (tx, events) => fn(listingsIn(tx), events));
  }
}

async function requireIn(listings: Store<ListingDoc>, id: string): Promise<ListingDoc> {
  const doc = await listings.findOne({ _id: id });
  if (!doc) throw notFound("Listing");
  return doc;
}

/** Makes move `m` of `cur` inside a transaction; 409 when the listing is not in its `from`. */
async function moveIn(
  listings: Store<ListingDoc>,
  events: DomainEvent[],
  cur: ListingDoc,
  m: Move,
): Promise<ListingDoc> {
  if (cur.state !== m.from || (m.sagaId !== undefined && cur.sagaId !== m.sagaId))
    throw conflict(`The listing is ${cur.state}, not ${m.from}`);
  const now = new Date().toISOString();
  const set: Record<string, unknown> = { state: m.to, updatedAt: now, version: cur.version + 1 };
  const unset: Record<string, true> = {};
  for (const [k, v] of Object.entries(m.fields ?? {})) {
    if (v === undefined) unset[k] = true;
    else set[k] = v;
  }
  if (m.to === "cancelled" || m.to === "sold" || m.to === "expired") {
    unset.liveNftId = true;
    set.endedAt = now;
  }
  const updated = await listings.updateOne(
    { _id: cur._id, version: cur.version },
    Object.keys(unset).length > 0 ? { $set: set, $unset: unset } : { $set: set },
  );
  if (!updated) throw new Error(`Listing ${cur._id} changed inside its transaction`);
  if (m.event) events.push(listingEvent(m.event, updated));
  return updated;
}

function listingEvent(type: MarketEventType, l: ListingDoc): DomainEvent {
  const data: ListingEvent = { listing: toListing(l), buyerId: l.buyerId };
  if (l.royalty) data.royalty = l.royalty;
  return domainEvent(type, `${l._id}:${l.version}`, data);
}
