import { businessError, conflict, forbidden } from "../shared/errors";
import type { Auction, AuctionState } from "../events/market";
import type { CollectionSpec, Doc } from "../store/store";

/**
 * What an English auction is made of and the rules a bid meets (lib/market/auction-book.ts
 * keeps the states): its documents, the least next bid, the end a late bid pushes on.
 * No store in here.
 */

export type InnerState = AuctionState | "pending" | "settling";

export interface HighestBid {
  bidId: string;
  bidderId: string;
  amount: string;
}

export interface AuctionDoc extends Doc, Omit<Auction, "id" | "state" | "highestBid"> {
  state: InnerState;
  highestBid: HighestBid | null;
  version: number;
  createKey: string;
  /** The saga that created it, then the one ending it. */
  sagaId: string;
  /** The collection's royalty terms when the auction was made: its sale pays by them. */
  royaltyBps: number;
  royaltyTo: string;
  /** Set while the auction may still sell its NFT: one per NFT (a unique index). */
  liveNftId?: string;
  /** When it was settled, unsold or cancelled: the market's retention counts from it. */
  endedAt?: string;
}

/** A bid that got in: what it beat (its saga pays that back), whether that is done. */
export interface BidDoc extends Doc {
  auctionId: string;
  bidderId: string;
  amount: string;
  sagaId: string;
  beaten: HighestBid | null;
  refunded: boolean;
  createdAt: string;
}

export const AUCTION_COLLECTIONS: Record<"auctions" | "bids", CollectionSpec> = {
  auctions: {
    unique: ["createKey", "liveNftId"],
    indexes: ["state", "sellerId", "collectionId", "nftId", "endsAt", "createdAt"],
    sparse: ["endedAt"],
  },
  // Removed with their auction (lib/market/market-retention.ts), found by auctionId.
  bids: { indexes: ["auctionId"] },
};

export interface NewAuction {
  nftId: string;
  collectionId: string;
  sellerId: string;
  priceTokenId: string;
  reservePrice: string;
  minIncrementBps: number;
  endsAt: string;
  royaltyBps: number;
  royaltyTo: string;
}

export interface AuctionFilter {
  state?: AuctionState;
  collection?: string;
  seller?: string;
}

/** What the end of an auction does: its winning bid's payouts, or none (unsold). */
export interface AuctionClosing {
  auction: Auction;
  sale: {
    winnerId: string;
    amount: string;
    royalty: string;
    royaltyTo: string;
    sellerShare: string;
  } | null;
}

export interface PlacedBid {
  auction: Auction;
  bid: { id: string; bidderId: string; amount: string };
  /** The bid this one beat, to be paid back. */
  beaten: HighestBid | null;
}

export const DEFAULT_MIN_INCREMENT_BPS = 500;

export const shown = (d: AuctionDoc): AuctionState =>
  d.state === "settling" || d.state === "pending" ? "active" : d.state;

export const toAuction = (d: AuctionDoc): Auction => ({
  id: d._id,
  nftId: d.nftId,
  collectionId: d.collectionId,
  sellerId: d.sellerId,
  priceTokenId: d.priceTokenId,
  reservePrice: d.reservePrice,
  minIncrementBps: d.minIncrementBps,
  endsAt: d.endsAt,
  state: shown(d),
  highestBid: d.highestBid
    ? { bidderId: d.highestBid.bidderId, amount: d.highestBid.amount }
    : null,
  winnerId: d.winnerId ?? null,
  createdAt: d.createdAt,
  updatedAt: d.updatedAt,
});

/**
 * The least a next bid may be: the reserve (and above 0) before the first bid; after it,
 * the highest × (1 + minIncrementBps / 10000) rounded up, and always above the highest.
 */
export function minimumBid(d: Pick<AuctionDoc, "reservePrice" | "minIncrementBps" | "highestBid">) {
  if (!d.highestBid) {
    const reserve = BigInt(d.reservePrice);
    return reserve > 0n ? reserve : 1n;
  }
  const high = BigInt(d.highestBid.amount);
  const up = (high * BigInt(10_000 + d.minIncrementBps) + 9_999n) / 10_000n;
  return up > high ? up : high + 1n;
}

export const royaltyOf = (amount: string, bps: number): string =>
  ((BigInt(amount) * BigInt(bps)) / 10_000n).toString(10);

/** 409 once the auction no longer takes bids, 403 for its seller, 422 BID_TOO_LOW. */
export function checkBid(d: AuctionDoc, bidderId: string, amount: string, now = Date.now()) {
  if (d.state !== "active" || Date.parse(d.endsAt) <= now) throw conflict("The auction has ended");
  if (d.sellerId === bidderId) throw forbidden("The seller cannot bid on their own auction");
  const min = minimumBid(d);
  if (BigInt(amount) < min)
    throw businessError("BID_TOO_LOW", `The bid must be at least ${min.toString(10)}`, [
      { field: "amount", message: `at least ${min.toString(10)}` },
    ]);
}

/** `endsAt` after a bid at `now`: moved to `extensionMs` after it when the end was nearer. */
export function extendedEnd(endsAt: string, now: number, extensionMs: number): string {
  return Date.parse(endsAt) - now < extensionMs
    ? new Date(now + extensionMs).toISOString()
    : endsAt;
}
