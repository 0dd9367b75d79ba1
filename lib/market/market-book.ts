import { conflict, forbidden, notFound, validationError } from "../shared/errors";
import { domainEvent, type EventName } from "../events/domain";
import {
  MARKET_EVENTS,
  type Listing,
  type ListingEvent,
  type ListingState,
} from "../events/market";
import { newId } from "../shared/ids";
import { publishThenClear, type OutboxWriter } from "../messaging/outbox";
import { insertIfAbsent, type CollectionSpec, type Doc, type Store } from "../store/store";

/**
 * The marketplace's listings: an NFT offered for a price in a platform token. No broker
 * in here (the market service checks ownership and tokens through their services).
 *
 *  - One live listing per NFT: `liveNftId` is set while a listing is active or reserved,
 *    under a unique sparse index, so of two listings racing for one NFT one is refused.
 *  - Every state change is a compare-and-set on the listing's `version` from the state
 *    it requires: active → reserved (a buyer's saga holds it) → sold, or back to active
 *    when the sale is undone; active → cancelled by its seller, or because its NFT moved
 *    away outside a sale.
 *  - Each change writes its event (market.listed / sold / cancelled) to the outbox
 *    before it is answered; an `unpublished` mark set in the same write lets `recover()`
 *    write what a crash kept back.
 */

type MarketEventType = EventName<typeof MARKET_EVENTS>;

export interface ListingDoc extends Doc, Omit<Listing, "id"> {
  version: number;
  createKey: string;
  /** The NFT while this listing is live (active or reserved): unique among listings. */
  liveNftId?: string;
  /** The saga holding a reserved listing, and its buyer. */
  sagaId?: string;
  buyerId?: string;
  unpublished?: MarketEventType;
}

export const MARKET_COLLECTIONS: Record<"listings", CollectionSpec> = {
  listings: {
    unique: ["createKey"],
    uniqueSparse: ["liveNftId"],
    indexes: ["state", "sellerId", "collectionId", "nftId"],
  },
};

export interface NewListing {
  /** The NFT as its service knows it now: who owns it decides who may list it. */
  nft: { id: string; collectionId: string; ownerId: string };
  priceTokenId: string;
  price: string;
}

export interface ListingFilter {
  state?: ListingState;
  collection?: string;
  seller?: string;
}

export const toListing = (d: ListingDoc): Listing => ({
  id: d._id,
  nftId: d.nftId,
  collectionId: d.collectionId,
  sellerId: d.sellerId,
  priceTokenId: d.priceTokenId,
  price: d.price,
  state: d.state,
  createdAt: d.createdAt,
  updatedAt: d.updatedAt,
});

export class MarketBook {
  constructor(
    private readonly listings: Store<ListingDoc>,
    private readonly outbox: OutboxWriter,
  ) {}

  /**
   * Lists an NFT for a price above 0 (400), by its owner only (403); 409 while it is
   * listed already. The price token's existence is the caller's to check (another service).
   */
  async list(sellerId: string, key: string, p: NewListing): Promise<Listing> {
    if (p.price === "0") throw validationError("price", "must be greater than 0");
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
      createdAt: now,
      updatedAt: now,
      version: 1,
      createKey: key,
      liveNftId: p.nft.id,
      unpublished: MARKET_EVENTS.listed,
    };
    if (!(await insertIfAbsent(this.listings, doc))) {
      const first = await this.listings.findOne({ createKey: key });
      if (first) return toListing(first); // the same call again
      // Else the unique live-NFT index: another listing of this NFT is active or reserved.
      throw conflict("The NFT is listed already", [{ field: "nftId", message: "already listed" }]);
    }
    await this.publish(doc);
    return toListing(doc);
  }

  async get(id: string): Promise<Listing> {
    return toListing(await this.require(id));
  }

  async find(f: ListingFilter, limit: number, offset: number) {
    const query: Record<string, unknown> = {};
    if (f.state) query.state = f.state;
    if (f.collection) query.collectionId = f.collection;
    if (f.seller) query.sellerId = f.seller;
    const [rows, total] = await Promise.all([
      this.listings.find(query, { sort: { createdAt: -1, _id: 1 }, limit, offset }),
      this.listings.count(query),
    ]);
    return { rows: rows.map(toListing), total };
  }

  /** The seller withdraws it: 403 for anyone else, 409 unless it is active. */
  async cancel(id: string, callerId: string): Promise<Listing> {
    const cur = await this.require(id);
    if (cur.sellerId !== callerId) throw forbidden("Only the seller may cancel the listing");
    if (cur.state === "cancelled") return toListing(cur);
    return this.move(id, "active", "cancelled", {}, MARKET_EVENTS.cancelled);
  }

  /** A buyer's saga holds an active listing; a repeat by the same saga answers it again. */
  async reserve(id: string, sagaId: string, buyerId: string): Promise<Listing> {
    const cur = await this.require(id);
    if (cur.state === "reserved" && cur.sagaId === sagaId) return toListing(cur);
    if (cur.sellerId === buyerId) throw forbidden("The seller cannot buy their own listing");
    return this.move(id, "active", "reserved", { sagaId, buyerId });
  }

  /** Undoes a reservation of this saga (the sale failed): active again. */
  async release(id: string, sagaId: string): Promise<Listing> {
    const cur = await this.require(id);
    if (cur.state !== "reserved" || cur.sagaId !== sagaId) return toListing(cur);
    return this.move(
      id,
      "reserved",
      "active",
      { sagaId: undefined, buyerId: undefined },
      undefined,
      sagaId,
    );
  }

  /** The sale is complete. */
  async sell(id: string, sagaId: string): Promise<Listing> {
    const cur = await this.require(id);
    if (cur.state === "sold" && cur.sagaId === sagaId) return toListing(cur);
    return this.move(id, "reserved", "sold", { liveNftId: undefined }, MARKET_EVENTS.sold, sagaId);
  }

  /**
   * The NFT moved to `owner` outside a sale: an active listing of another seller can no
   * longer be bought, and shows `cancelled`. Returns the listings cancelled.
   */
  async nftMoved(nftId: string, owner: string): Promise<number> {
    let n = 0;
    for (const l of await this.listings.find({ nftId, state: "active" })) {
      if (l.sellerId === owner) continue;
      try {
        await this.move(l._id, "active", "cancelled", {}, MARKET_EVENTS.cancelled);
        n++;
      } catch (err) {
        if ((err as { code?: number }).code !== 409) throw err; // changed meanwhile: fine
      }
    }
    return n;
  }

  /** Writes the events a crash kept back. Returns how many. */
  async recover(): Promise<number> {
    const left = await this.listings.find({ unpublished: { $exists: true } });
    for (const l of left) await this.publish(l);
    return left.length;
  }

  private async require(id: string): Promise<ListingDoc> {
    const doc = await this.listings.findOne({ _id: id });
    if (!doc) throw notFound("Listing");
    return doc;
  }

  /** One state change by compare-and-set; 409 when the listing is not in state `from`. */
  private async move(
    id: string,
    from: ListingState,
    to: ListingState,
    fields: Partial<ListingDoc>,
    event?: MarketEventType,
    sagaId?: string,
  ): Promise<Listing> {
    for (;;) {
      const cur = await this.require(id);
      if (cur.state !== from || (sagaId !== undefined && cur.sagaId !== sagaId))
        throw conflict(`The listing is ${cur.state}, not ${from}`);
      const set: Record<string, unknown> = {
        state: to,
        updatedAt: new Date().toISOString(),
        version: cur.version + 1,
      };
      const unset: Record<string, true> = {};
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) unset[k] = true;
        else set[k] = v;
      }
      if (to === "cancelled" || to === "sold") unset.liveNftId = true;
      if (event) set.unpublished = event;
      const updated = await this.listings.updateOne(
        { _id: id, version: cur.version },
        Object.keys(unset).length > 0 ? { $set: set, $unset: unset } : { $set: set },
      );
      if (!updated) continue; // changed meanwhile: look again
      if (event) await this.publish(updated);
      return toListing(updated);
    }
  }

  private async publish(l: ListingDoc): Promise<void> {
    const type = l.unpublished;
    if (!type) return;
    const data: ListingEvent = { listing: toListing(l), buyerId: l.buyerId };
    await publishThenClear(
      this.outbox,
      this.listings,
      l,
      domainEvent(type, `${l._id}:${l.version}`, data),
    );
  }
}
