import { conflict, forbidden, notFound, validationError } from "../shared/errors";
import { domainEvent, type DomainEvent } from "../events/domain";
import { MARKET_EVENTS, type Auction, type AuctionEvent } from "../events/market";
import { commitWithEvents, type OutboxWriter } from "../messaging/outbox";
import type { Database, Store, TxStores } from "../store/store";
import { MAX_LISTING_MS, isLapsed, type ListingDoc } from "./market-book";
import {
  checkBid,
  extendedEnd,
  royaltyOf,
  shown,
  toAuction,
  type AuctionClosing,
  type AuctionDoc,
  type AuctionFilter,
  type BidDoc,
  type HighestBid,
  type InnerState,
  type NewAuction,
  type PlacedBid,
} from "./auction-rules";

export * from "./auction-rules";

/**
 * English auctions: the NFT held by the market (an nfts.lock named by the auction's id)
 * while one runs, every bid in the market's escrow until a higher one beats it. The money
 * and the NFT move in sagas (lib/sagas/auction-sagas.ts); this book is the auctions' states,
 * each change a compare-and-set on `version` in one transaction with its event:
 *
 *   pending (its NFT being held) → active → settling (its end, one saga) → settled | unsold;
 *   active → cancelled by its seller before the first bid.
 *
 * A bid is placed by one compare-and-set on the auction that both checks it (active, before
 * `endsAt`, at least the reserve and the increment over the highest) and makes it the
 * highest, once the bidder's money is already in escrow: of any number of racing bids each
 * is either in (and beats the one before it, which its saga pays back) or refused (and its
 * own saga pays it back). The end is the same kind of move (active → settling, only once
 * `endsAt` is past), so a last bid racing the end is either in, and pushes `endsAt` on, or
 * refused as ended.
 */

const auctionsIn = (tx: TxStores): Store<AuctionDoc> => tx.store<AuctionDoc>("auctions");
const bidsIn = (tx: TxStores): Store<BidDoc> => tx.store<BidDoc>("bids");

export class AuctionBook {
  private readonly auctions: Store<AuctionDoc>;

  constructor(
    private readonly db: Database,
    private readonly outbox: OutboxWriter,
    /** A bid this close to the end pushes the end to this long after the bid (ms). */
    private readonly extensionMs: number,
  ) {
    this.auctions = auctionsIn(db);
  }

  /** Checks an auction before anything moves: 400 naming the field. */
  static check(a: Pick<NewAuction, "endsAt" | "minIncrementBps">, now = Date.now()): void {
    const at = Date.parse(a.endsAt);
    if (Number.isNaN(at)) throw validationError("endsAt", "must be an ISO 8601 date-time");
    if (at <= now) throw validationError("endsAt", "must be in the future");
    if (at > now + MAX_LISTING_MS) throw validationError("endsAt", "must be within a year");
    if (!Number.isInteger(a.minIncrementBps) || a.minIncrementBps < 0 || a.minIncrementBps > 10_000)
      throw validationError("minIncrementBps", "must be an integer from 0 to 10000");
  }

  /** The creating saga's first step: pending until its NFT is held; 409 listed or auctioned. */
  async create(id: string, sagaId: string, a: NewAuction): Promise<Auction> {
    AuctionBook.check(a);
    const now = new Date().toISOString();
    const doc: AuctionDoc = {
      _id: id,
      ...a,
      endsAt: new Date(a.endsAt).toISOString(),
      state: "pending",
      highestBid: null,
      winnerId: null,
      createdAt: now,
      updatedAt: now,
      version: 1,
      createKey: sagaId,
      sagaId,
      liveNftId: a.nftId,
    };
    return this.change(async (tx, auctions) => {
      const first = await auctions.findOne({ createKey: sagaId });
      if (first) return toAuction(first);
      if (await auctions.findOne({ liveNftId: a.nftId }))
        throw conflict("The NFT is in another auction", [
          { field: "nftId", message: "in another auction" },
        ]);
      const listed = await tx.store<ListingDoc>("listings").findOne({ liveNftId: a.nftId });
      if (listed && !isLapsed(listed))
        throw conflict("The NFT is listed", [{ field: "nftId", message: "listed" }]);
      await auctions.insert(doc);
      return toAuction(doc);
    });
  }

  /** Undoes `create` (its NFT could not be held): the pending auction goes. */
  async drop(id: string, sagaId: string): Promise<null> {
    await this.auctions.remove({ _id: id, sagaId, state: "pending" });
    return null;
  }

  /** The NFT is held: the auction runs. */
  activate(id: string, sagaId: string): Promise<Auction> {
    return this.move(id, true, cur => {
      if (cur.state !== "pending") return null;
      return { from: "pending", to: "active", sagaId, event: "auctionStarted" };
    });
  }

  /** Whether an auction that may still sell it holds the NFT (listing it is then a 409). */
  async liveOn(nftId: string): Promise<boolean> {
    return (await this.auctions.findOne({ liveNftId: nftId })) !== null;
  }

  /**
   * The bid's saga, its money in escrow: the bid checked and made the highest in one move,
   * `endsAt` pushed on when near. A repeat of the same bid answers it again.
   */
  place(id: string, bidId: string, sagaId: string, bidderId: string, amount: string) {
    return this.change(async (tx, auctions, events): Promise<PlacedBid> => {
      const bids = bidsIn(tx);
      const cur = await requireIn(auctions, id);
      const again = await bids.findOne({ _id: bidId });
      if (again) {
        const bid = { id: bidId, bidderId: again.bidderId, amount: again.amount };
        return { auction: toAuction(cur), bid, beaten: again.beaten };
      }
      const now = Date.now();
      checkBid(cur, bidderId, amount, now);
      const highestBid: HighestBid = { bidId, bidderId, amount };
      const fields = { highestBid, endsAt: extendedEnd(cur.endsAt, now, this.extensionMs) };
      const bid = { id: bidId, bidderId, amount };
      const updated = await moveIn(auctions, events, cur, {
        from: "active",
        to: "active",
        fields,
        event: "bidPlaced",
        more: { bid },
      });
      await bids.insert({
        _id: bidId,
        auctionId: id,
        bidderId,
        amount,
        sagaId,
        beaten: cur.highestBid,
        refunded: false,
        createdAt: new Date(now).toISOString(),
      });
      return { auction: toAuction(updated), bid, beaten: cur.highestBid };
    });
  }

  /** Answers null unless the bid got in (409): what a bid's undo asks before its refund. */
  async bidAbsent(id: string, bidId: string): Promise<null> {
    const bid = await bidsIn(this.db).findOne({ _id: bidId, auctionId: id });
    if (bid) throw conflict("The bid is in: its escrow is the auction's");
    return null;
  }

  /** The bid `beaten` was paid back: its event (the outbid bidder's row), once. */
  refunded(id: string, bidId: string): Promise<Auction> {
    return this.change(async (tx, auctions, events) => {
      const bids = bidsIn(tx);
      const cur = await requireIn(auctions, id);
      const by = await bids.findOne({ _id: bidId });
      if (!by?.beaten || by.refunded) return toAuction(cur);
      await bids.updateOne({ _id: bidId }, { $set: { refunded: true } });
      const b = by.beaten;
      const data: AuctionEvent = {
        auction: toAuction(cur),
        bid: { id: b.bidId, bidderId: b.bidderId, amount: b.amount },
      };
      events.push(domainEvent(MARKET_EVENTS.bidRefunded, `${b.bidId}:refunded`, data));
      return toAuction(cur);
    });
  }

  /**
   * The ending saga's first step, once `endsAt` is past (409 before, or when no longer
   * active): settling, and what the end pays. A repeat by the same saga answers it again.
   */
  close(id: string, sagaId: string): Promise<AuctionClosing> {
    return this.change(async (_tx, auctions, events) => {
      let cur = await requireIn(auctions, id);
      if (!(cur.state === "settling" && cur.sagaId === sagaId)) {
        if (cur.state !== "active") throw conflict(`The auction is ${shown(cur)}`);
        if (Date.parse(cur.endsAt) > Date.now()) throw conflict("The auction has not ended");
        cur = await moveIn(auctions, events, cur, {
          from: "active",
          to: "settling",
          fields: { sagaId },
        });
      }
      return { auction: toAuction(cur), sale: saleOf(cur) };
    });
  }

  /** Undoes `close` of this saga: the auction runs again (its end is tried anew). */
  reopen(id: string, sagaId: string): Promise<Auction> {
    return this.move(id, false, cur => {
      if (cur.state !== "settling" || cur.sagaId !== sagaId) return null;
      return { from: "settling", to: "active", sagaId };
    });
  }

  /** The end is paid out (or there was no bid): settled to the winner, or unsold. */
  finish(id: string, sagaId: string): Promise<Auction> {
    return this.move(id, false, cur => {
      if (cur.state !== "settling" || cur.sagaId !== sagaId) return null;
      const sale = saleOf(cur);
      if (!sale)
        return { from: "settling", to: "unsold", sagaId, event: "auctionUnsold", end: true };
      return {
        from: "settling",
        to: "settled",
        sagaId,
        fields: { winnerId: sale.winnerId },
        event: "auctionSettled",
        more: { royalty: sale.royalty, royaltyTo: sale.royaltyTo },
        end: true,
      };
    });
  }

  /** The cancelling saga's step: by its seller (403), before the first bid (409). */
  cancel(id: string, sagaId: string, by: string): Promise<Auction> {
    return this.move(id, false, cur => {
      if (cur.state === "cancelled" && cur.sagaId === sagaId) return null;
      if (cur.sellerId !== by) throw forbidden("Only the seller may cancel the auction");
      if (cur.state === "active" && cur.highestBid) throw conflict("The auction has bids");
      const fields = { sagaId };
      return { from: "active", to: "cancelled", fields, event: "auctionCancelled", end: true };
    });
  }

  async get(id: string): Promise<Auction> {
    return toAuction(await requireIn(this.auctions, id));
  }

  async doc(id: string): Promise<AuctionDoc> {
    return requireIn(this.auctions, id);
  }

  /** Newest first; a pending auction is nobody's to see. */
  async find(f: AuctionFilter, limit: number, offset: number) {
    const query: Record<string, unknown> = {};
    if (f.collection) query.collectionId = f.collection;
    if (f.seller) query.sellerId = f.seller;
    if (f.state === "active") query.state = { $in: ["active", "settling"] };
    else if (f.state) query.state = f.state;
    else query.state = { $ne: "pending" };
    const [rows, total] = await Promise.all([
      this.auctions.find(query, { sort: { createdAt: -1, _id: -1 }, limit, offset }),
      this.auctions.count(query),
    ]);
    return { rows: rows.map(toAuction), total };
  }

  /** Active auctions past their end, for the sweep that starts their ending saga. */
  due(limit = 100): Promise<AuctionDoc[]> {
    return this.auctions.find(
      { state: "active", endsAt: { $lte: new Date().toISOString() } },
      { sort: { endsAt: 1 }, limit },
    );
  }

  private move(
    id: string,
    pending: boolean,
    decide: (cur: AuctionDoc) => AuctionMove | null,
  ): Promise<Auction> {
    return this.change(async (_tx, auctions, events) => {
      const cur = await requireIn(auctions, id, pending);
      const m = decide(cur);
      return toAuction(m ? await moveIn(auctions, events, cur, m) : cur);
    });
  }

  private change<R>(
    fn: (tx: TxStores, auctions: Store<AuctionDoc>, events: DomainEvent[]) => Promise<R>,
  ) {
    return commitWithEvents(this.db, this.outbox, (tx, events) => fn(tx, auctionsIn(tx), events));
  }
}

function saleOf(d: AuctionDoc): AuctionClosing["sale"] {
  const h = d.highestBid;
  if (!h || BigInt(h.amount) < BigInt(d.reservePrice)) return null;
  const royalty = royaltyOf(h.amount, d.royaltyBps);
  return {
    winnerId: h.bidderId,
    amount: h.amount,
    royalty,
    royaltyTo: d.royaltyTo,
    sellerShare: (BigInt(h.amount) - BigInt(royalty)).toString(10),
  };
}

interface AuctionMove {
  from: InnerState;
  to: InnerState;
  fields?: Partial<AuctionDoc>;
  /** The saga the auction must be held by. */
  sagaId?: string;
  event?: "auctionStarted" | "bidPlaced" | "auctionSettled" | "auctionUnsold" | "auctionCancelled";
  more?: Omit<AuctionEvent, "auction">;
  /** The auction no longer sells its NFT: another listing or auction may. */
  end?: boolean;
}

async function requireIn(auctions: Store<AuctionDoc>, id: string, pending = false) {
  const doc = await auctions.findOne({ _id: id });
  if (!doc || (doc.state === "pending" && !pending)) throw notFound("Auction");
  return doc;
}

async function moveIn(
  auctions: Store<AuctionDoc>,
  events: DomainEvent[],
  cur: AuctionDoc,
  m: AuctionMove,
): Promise<AuctionDoc> {
  if (cur.state !== m.from || (m.sagaId !== undefined && cur.sagaId !== m.sagaId))
    throw conflict(`The auction is ${shown(cur)}`);
  const now = new Date().toISOString();
  const set: Record<string, unknown> = {
    ...m.fields,
    state: m.to,
    updatedAt: now,
    version: cur.version + 1,
    // An end is final (settled, unsold, cancelled): the market's retention counts from it.
    ...(m.end ? { endedAt: now } : {}),
  };
  const update = m.end ? { $set: set, $unset: { liveNftId: true } } : { $set: set };
  const updated = await auctions.updateOne({ _id: cur._id, version: cur.version }, update);
  if (!updated) throw new Error(`Auction ${cur._id} changed inside its transaction`);
  if (m.event) {
    const data: AuctionEvent = { auction: toAuction(updated), ...m.more };
    events.push(domainEvent(MARKET_EVENTS[m.event], `${updated._id}:${updated.version}`, data));
  }
  return updated;
}
