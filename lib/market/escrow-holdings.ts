import type { AuctionBid } from "../events/market";
import type { Database, Store } from "../store/store";
import type { AuctionDoc } from "./auction-rules";
import type { ListingDoc } from "./market-book";
import type { OfferDoc } from "./offer-book";

/**
 * What the market's escrow should hold, read from the market's own store for the operator
 * page (mixins/market-ops.mixin.ts): per price token, the prices of the offers still
 * holding theirs (active, or held by a sale under way), the highest bids of the auctions
 * running or ending, and the prices of the listings reserved by a purchase in flight. And
 * the auctions ending soonest. Every read goes through an index (`state`, `endsAt`) with a
 * limit, so its cost never grows with what the market has stored.
 *
 * The escrow moves in sagas, a step before or after the market's state changes: while one
 * is under way the two may differ for a moment; a difference that stays is money lost or
 * stuck. Bids beaten but not yet paid back (the step right after the bid) are not counted.
 */

/** What the escrow holds for one price token, in base units (decimal strings). */
export interface EscrowHeld {
  tokenId: string;
  offers: string;
  bids: string;
  purchases: string;
  /** offers + bids + purchases */
  held: string;
}

export interface EscrowHoldings {
  /** Largest `held` first, at most `maxTokens` (and those asked for). */
  tokens: EscrowHeld[];
  /** How many documents each kind counts (all of them, not only those summed). */
  counts: { offers: number; auctions: number; purchases: number };
  /** False when a kind had more documents than the scan reads (or more tokens than shown): the sums are partial. */
  complete: boolean;
}

export interface EndingAuction {
  id: string;
  nftId: string;
  collectionId: string;
  priceTokenId: string;
  highestBid: AuctionBid | null;
  endsAt: string;
}

export interface HoldingsLimits {
  /** Documents read per kind at most. */
  scan: number;
  /** Price tokens listed at most. */
  maxTokens: number;
}

export const HOLDINGS_LIMITS: HoldingsLimits = { scan: 10_000, maxTokens: 20 };

/** Offers whose price is in escrow: made (active, lapsed or not yet closed) or under a sale. */
const OFFERS_HELD = { state: { $in: ["active", "accepting"] } };
/** Auctions whose highest bid (when there is one) is in escrow: running, or being settled. */
const AUCTIONS_HELD = { state: { $in: ["active", "settling"] } };
/** Listings a purchase saga holds: its buyer's price may be in escrow. */
const LISTINGS_HELD = { state: "reserved" };

export class EscrowView {
  private readonly offers: Store<OfferDoc>;
  private readonly auctions: Store<AuctionDoc>;
  private readonly listings: Store<ListingDoc>;

  constructor(
    db: Database,
    private readonly limits: HoldingsLimits = HOLDINGS_LIMITS,
  ) {
    this.offers = db.store<OfferDoc>("offers");
    this.auctions = db.store<AuctionDoc>("auctions");
    this.listings = db.store<ListingDoc>("listings");
  }

  /** `also`: price tokens to list even when nothing of theirs is held (their balance should be 0). */
  async holdings(also: string[] = []): Promise<EscrowHoldings> {
    const { scan, maxTokens } = this.limits;
    // One more than the scan reads tells whether there were more.
    const read = { limit: scan + 1 };
    const [offers, auctions, listings, nOffers, nAuctions, nPurchases] = await Promise.all([
      this.offers.find(OFFERS_HELD, read),
      this.auctions.find(AUCTIONS_HELD, read),
      this.listings.find(LISTINGS_HELD, read),
      this.offers.count(OFFERS_HELD),
      this.auctions.count(AUCTIONS_HELD),
      this.listings.count(LISTINGS_HELD),
    ]);
    const by = new Map<string, { offers: bigint; bids: bigint; purchases: bigint }>();
    const add = (tokenId: string, kind: "offers" | "bids" | "purchases", amount: string) => {
      let row = by.get(tokenId);
      if (!row) by.set(tokenId, (row = { offers: 0n, bids: 0n, purchases: 0n }));
      row[kind] += BigInt(amount);
    };
    for (const o of offers.slice(0, scan)) add(o.priceTokenId, "offers", o.price);
    for (const a of auctions.slice(0, scan))
      if (a.highestBid) add(a.priceTokenId, "bids", a.highestBid.amount);
    for (const l of listings.slice(0, scan)) add(l.priceTokenId, "purchases", l.price);
    for (const tokenId of also) add(tokenId, "offers", "0");
    const rows = [...by].map(([tokenId, r]) => ({
      tokenId,
      ...r,
      held: r.offers + r.bids + r.purchases,
    }));
    rows.sort((a, b) =>
      a.held === b.held ? a.tokenId.localeCompare(b.tokenId) : a.held > b.held ? -1 : 1,
    );
    const partial = [offers, auctions, listings].some(docs => docs.length > scan);
    // The largest, and those asked for whatever their size.
    const shown = rows.filter((r, i) => i < maxTokens || also.includes(r.tokenId));
    return {
      tokens: shown.map(r => ({
        tokenId: r.tokenId,
        offers: r.offers.toString(10),
        bids: r.bids.toString(10),
        purchases: r.purchases.toString(10),
        held: r.held.toString(10),
      })),
      counts: { offers: nOffers, auctions: nAuctions, purchases: nPurchases },
      complete: !partial && rows.length <= maxTokens,
    };
  }

  /** The `limit` running auctions that end first (those being settled included). */
  async endingSoon(limit: number): Promise<EndingAuction[]> {
    const docs = await this.auctions.find(
      { state: { $in: ["active", "settling"] } },
      { sort: { endsAt: 1, _id: 1 }, limit },
    );
    return docs.map(d => ({
      id: d._id,
      nftId: d.nftId,
      collectionId: d.collectionId,
      priceTokenId: d.priceTokenId,
      highestBid: d.highestBid
        ? { bidderId: d.highestBid.bidderId, amount: d.highestBid.amount }
        : null,
      endsAt: d.endsAt,
    }));
  }
}

/** One price token's line of the operator page: what the escrow holds beside what it should. */
export interface EscrowLine extends EscrowHeld {
  /** The escrow account's balance of the token; null when tokens did not answer. */
  balance: string | null;
  /** balance = held; null when the balance is unknown. */
  agrees: boolean | null;
}

export interface MarketOpsStats {
  escrow: {
    account: string;
    tokens: EscrowLine[];
    counts: EscrowHoldings["counts"];
    complete: boolean;
    /** Every line agrees (and the sums are complete); null when a balance is unknown. */
    agrees: boolean | null;
  };
  endingSoon: EndingAuction[];
}

/** The page's figures from the holdings and the balances tokens answered (by token id). */
export function opsStatsOf(
  account: string,
  h: EscrowHoldings,
  balances: Map<string, string | null>,
  endingSoon: EndingAuction[],
): MarketOpsStats {
  const tokens = h.tokens.map((t): EscrowLine => {
    const balance = balances.get(t.tokenId) ?? null;
    return { ...t, balance, agrees: balance === null ? null : BigInt(balance) === BigInt(t.held) };
  });
  const unknown = tokens.some(t => t.agrees === null);
  const agrees = unknown ? null : h.complete && tokens.every(t => t.agrees === true);
  return {
    escrow: { account, tokens, counts: h.counts, complete: h.complete, agrees },
    endingSoon,
  };
}
