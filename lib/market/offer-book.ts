import { conflict, forbidden, notFound, validationError } from "../shared/errors";
import { domainEvent, type DomainEvent } from "../events/domain";
import {
  MARKET_EVENTS,
  type Offer,
  type OfferEvent,
  type OfferState,
  type OfferTrait,
} from "../events/market";
import type { Nft } from "../events/nfts";
import { commitWithEvents, type OutboxWriter } from "../messaging/outbox";
import type { CollectionSpec, Database, Doc, Store, TxStores } from "../store/store";
import { MAX_LISTING_MS } from "./market-book";

/**
 * Offers: a price for one NFT, for any NFT of a collection, or for those of a collection
 * with given traits, waiting in the market's escrow while the offer is active. The money
 * moves in sagas (lib/sagas/offer-sagas.ts); this book is the offers' states, each change
 * a compare-and-set on `version` in one transaction with its event:
 *
 *   pending (its escrow being paid) → active → accepting (one owner's sale holds it)
 *   → accepted; accepting → active again when that sale is undone; active → cancelled
 *   by its maker, or expired at its `expiresAt`, its escrow then paid back.
 *
 * So of two owners accepting one collection offer, or an acceptance racing a
 * cancellation, exactly one moves the offer on; the other is a 409. Pending and accepting
 * are inner states: a client sees a pending offer nowhere and an accepting one as active.
 */

type InnerState = OfferState | "pending" | "accepting";

/** The states an offer ends in (none is left again but by an undone close). */
const ENDED_OFFER: readonly InnerState[] = ["accepted", "cancelled", "expired"];

export interface OfferDoc extends Doc, Omit<Offer, "id" | "state"> {
  state: InnerState;
  version: number;
  createKey: string;
  /** The saga that funds it, then the one accepting or closing it. */
  sagaId: string;
  /** Sorts by price, highest first (78 digits hold 2^256 − 1). */
  priceKey: string;
  /** When it was accepted, cancelled or expired: the market's retention counts from it. */
  endedAt?: string;
}

export const OFFER_COLLECTIONS: Record<"offers", CollectionSpec> = {
  offers: {
    unique: ["createKey"],
    indexes: ["state", "makerId", "collectionId", "nftId", "priceKey", "expiresAt"],
    sparse: ["endedAt"],
  },
};

export interface NewOffer {
  nftId: string | null;
  collectionId: string;
  traits: OfferTrait[];
  priceTokenId: string;
  price: string;
  expiresAt?: string;
}

export interface OfferFilter {
  nft?: string;
  collection?: string;
  maker?: string;
  state?: OfferState;
}

const offersIn = (tx: TxStores): Store<OfferDoc> => tx.store<OfferDoc>("offers");

export const isOfferLapsed = (d: Pick<OfferDoc, "state" | "expiresAt">, now = Date.now()) =>
  d.state === "active" && d.expiresAt != null && Date.parse(d.expiresAt) <= now;

const shown = (d: OfferDoc, now: number): OfferState => {
  if (d.state === "accepting") return "active";
  if (isOfferLapsed(d, now)) return "expired";
  return d.state as OfferState;
};

export const toOffer = (d: OfferDoc, now = Date.now()): Offer => ({
  id: d._id,
  makerId: d.makerId,
  nftId: d.nftId,
  collectionId: d.collectionId,
  traits: d.traits,
  priceTokenId: d.priceTokenId,
  price: d.price,
  state: shown(d, now),
  expiresAt: d.expiresAt ?? null,
  ...(d.soldNftId ? { soldNftId: d.soldNftId, sellerId: d.sellerId } : {}),
  createdAt: d.createdAt,
  updatedAt: d.updatedAt,
});

/** Whether `nft` is one the offer is for: that NFT, or of its collection with its traits. */
export function offerMatches(o: Pick<Offer, "nftId" | "collectionId" | "traits">, nft: Nft) {
  if (o.nftId !== null) return nft.id === o.nftId;
  if (nft.collectionId !== o.collectionId) return false;
  const has = nft.metadata.attributes ?? [];
  return o.traits.every(t =>
    has.some(a => a.trait_type === t.trait_type && String(a.value) === String(t.value)),
  );
}

export class OfferBook {
  private readonly offers: Store<OfferDoc>;

  constructor(
    private readonly db: Database,
    private readonly outbox: OutboxWriter,
  ) {
    this.offers = offersIn(db);
  }

  /** Checks an offer before any money moves: 400 naming the field. */
  static check(o: NewOffer): void {
    if (o.price === "0") throw validationError("price", "must be greater than 0");
    if (o.nftId !== null && o.traits.length > 0)
      throw validationError("traits", "an offer on one NFT takes no traits");
    if (o.expiresAt !== undefined) {
      const at = Date.parse(o.expiresAt);
      if (Number.isNaN(at)) throw validationError("expiresAt", "must be an ISO 8601 date-time");
      if (at <= Date.now()) throw validationError("expiresAt", "must be in the future");
      if (at > Date.now() + MAX_LISTING_MS)
        throw validationError("expiresAt", "must be within a year");
    }
  }

  /** The funding saga's first step: the offer, pending until its escrow is paid. */
  async create(id: string, makerId: string, sagaId: string, o: NewOffer): Promise<Offer> {
    OfferBook.check(o);
    const now = new Date().toISOString();
    const doc: OfferDoc = {
      _id: id,
      makerId,
      nftId: o.nftId,
      collectionId: o.collectionId,
      traits: o.traits,
      priceTokenId: o.priceTokenId,
      price: o.price,
      state: "pending",
      expiresAt: o.expiresAt !== undefined ? new Date(o.expiresAt).toISOString() : null,
      createdAt: now,
      updatedAt: now,
      version: 1,
      createKey: sagaId,
      sagaId,
      priceKey: o.price.padStart(78, "0"),
    };
    return this.change(async offers => {
      const first = await offers.findOne({ createKey: sagaId });
      if (first) return toOffer(first);
      await offers.insert(doc);
      return toOffer(doc);
    });
  }

  /** Undoes `create` (its escrow was not paid): the pending offer goes. */
  async drop(id: string, sagaId: string): Promise<null> {
    await this.offers.remove({ _id: id, sagaId, state: "pending" });
    return null;
  }

  /** The escrow is paid: the offer is active. */
  activate(id: string, sagaId: string): Promise<Offer> {
    return this.move(
      id,
      cur =>
        cur.state === "active"
          ? null
          : { from: "pending", to: "active", sagaId, event: "offerMade" },
      true,
    );
  }

  /** An owner's sale of `nft` takes the offer: 403 unless a matching NFT of theirs, 409 unless active. */
  reserve(id: string, sagaId: string, nft: Nft, sellerId: string): Promise<Offer> {
    return this.move(id, cur => {
      if (cur.state === "accepting" && cur.sagaId === sagaId) return null;
      if (nft.ownerId !== sellerId) throw forbidden("Only the NFT's owner may accept an offer");
      if (!offerMatches(cur, nft)) throw forbidden("The NFT does not match the offer");
      if (cur.makerId === sellerId) throw forbidden("The maker cannot accept their own offer");
      if (isOfferLapsed(cur)) throw conflict("The offer has expired");
      return {
        from: "active",
        to: "accepting",
        fields: { sagaId, soldNftId: nft.id, sellerId },
      };
    });
  }

  /** Undoes `reserve` of this saga: active again. */
  release(id: string, sagaId: string): Promise<Offer> {
    return this.move(id, cur => {
      if (cur.state !== "accepting" || cur.sagaId !== sagaId) return null;
      const fields = { soldNftId: undefined, sellerId: undefined };
      return { from: "accepting", to: "active", fields, sagaId };
    });
  }

  /** The sale is done: accepted, with the royalty its event reports. */
  accept(id: string, sagaId: string, royalty: string, royaltyTo: string): Promise<Offer> {
    return this.move(id, cur => {
      if (cur.state === "accepted" && cur.sagaId === sagaId) return null;
      return {
        from: "accepting",
        to: "accepted",
        sagaId,
        event: "offerAccepted",
        more: { royalty, royaltyTo },
      };
    });
  }

  /**
   * The closing saga's first step: cancelled by its maker (403 for anyone else) or
   * expired (past its time only); 409 unless active. A repeat by the same saga answers it.
   */
  close(id: string, sagaId: string, how: "cancelled" | "expired", by?: string): Promise<Offer> {
    return this.move(id, cur => {
      if (cur.state === how && cur.sagaId === sagaId) return null;
      if (how === "cancelled" && cur.makerId !== by)
        throw forbidden("Only the maker may cancel the offer");
      if (how === "expired" && !isOfferLapsed(cur)) throw conflict("The offer has not expired");
      const event = how === "cancelled" ? "offerCancelled" : "offerExpired";
      return { from: "active", to: how, fields: { sagaId }, event };
    });
  }

  /** Undoes `close` of this saga (its outcome was unknown): active again. */
  reopen(id: string, sagaId: string): Promise<Offer> {
    return this.move(id, cur => {
      if (cur.sagaId !== sagaId || (cur.state !== "cancelled" && cur.state !== "expired"))
        return null;
      return { from: cur.state, to: "active", sagaId };
    });
  }

  async get(id: string): Promise<Offer> {
    return toOffer(await requireIn(this.offers, id));
  }

  async doc(id: string): Promise<OfferDoc> {
    return requireIn(this.offers, id);
  }

  /** Highest price first; a pending offer is nobody's to see. */
  async find(f: OfferFilter, limit: number, offset: number) {
    const now = new Date();
    const iso = now.toISOString();
    const query: Record<string, unknown> = {};
    if (f.nft) query.nftId = f.nft;
    if (f.collection) query.collectionId = f.collection;
    if (f.maker) query.makerId = f.maker;
    const live = [{ expiresAt: { $exists: false } }, { expiresAt: { $gt: iso } }];
    if (f.state === "active")
      Object.assign(query, { state: { $in: ["active", "accepting"] }, $or: live });
    else if (f.state === "expired")
      query.$or = [{ state: "expired" }, { state: "active", expiresAt: { $lte: iso } }];
    else if (f.state) query.state = f.state;
    else query.state = { $ne: "pending" };
    const [rows, total] = await Promise.all([
      this.offers.find(query, { sort: { priceKey: -1, _id: 1 }, limit, offset }),
      this.offers.count(query),
    ]);
    return { rows: rows.map(d => toOffer(d, now.getTime())), total };
  }

  /** Active offers past their time, for the sweep that closes them and pays them back. */
  lapsed(limit = 100): Promise<OfferDoc[]> {
    return this.offers.find(
      { state: "active", expiresAt: { $lte: new Date().toISOString() } },
      { sort: { expiresAt: 1 }, limit },
    );
  }

  private move(
    id: string,
    decide: (cur: OfferDoc) => OfferMove | null,
    pending = false,
  ): Promise<Offer> {
    return this.change(async (offers, events) => {
      const cur = await requireIn(offers, id, pending);
      const m = decide(cur);
      return toOffer(m ? await moveIn(offers, events, cur, m) : cur);
    });
  }

  private change<R>(fn: (offers: Store<OfferDoc>, events: DomainEvent[]) => Promise<R>) {
    return commitWithEvents(this.db, this.outbox, (tx, events) => fn(offersIn(tx), events));
  }
}

interface OfferMove {
  from: InnerState;
  to: InnerState;
  fields?: Partial<OfferDoc>;
  /** The saga the offer must be held by. */
  sagaId?: string;
  event?: "offerMade" | "offerAccepted" | "offerCancelled" | "offerExpired";
  more?: Omit<OfferEvent, "offer">;
}

async function requireIn(offers: Store<OfferDoc>, id: string, pending = false) {
  const doc = await offers.findOne({ _id: id });
  if (!doc || (doc.state === "pending" && !pending)) throw notFound("Offer");
  return doc;
}

async function moveIn(
  offers: Store<OfferDoc>,
  events: DomainEvent[],
  cur: OfferDoc,
  m: OfferMove,
): Promise<OfferDoc> {
  if (cur.state !== m.from || (m.sagaId !== undefined && cur.sagaId !== m.sagaId))
    throw conflict(`The offer is ${shown(cur, Date.now())}, not ${m.from}`);
  const now = new Date().toISOString();
  const set: Record<string, unknown> = { state: m.to, updatedAt: now, version: cur.version + 1 };
  const unset: Record<string, true> = {};
  for (const [k, v] of Object.entries(m.fields ?? {})) {
    if (v === undefined) unset[k] = true;
    else set[k] = v;
  }
  // An undone close (reopen) makes it live again: no longer counted towards the retention.
  if (ENDED_OFFER.includes(m.to)) set.endedAt = now;
  else if (cur.endedAt !== undefined) unset.endedAt = true;
  const updated = await offers.updateOne(
    { _id: cur._id, version: cur.version },
    Object.keys(unset).length > 0 ? { $set: set, $unset: unset } : { $set: set },
  );
  if (!updated) throw new Error(`Offer ${cur._id} changed inside its transaction`);
  if (m.event) {
    const data: OfferEvent = { offer: toOffer(updated), ...m.more };
    events.push(domainEvent(MARKET_EVENTS[m.event], `${updated._id}:${updated.version}`, data));
  }
  return updated;
}
