/**
 * Events of the marketplace (services/market.service.ts), through its outbox like the NFT
 * events (lib/events/nfts.ts): the analytics and the metrics count sales.
 */

export const MARKET_EVENTS = {
  listed: "market.listed",
  sold: "market.sold",
  cancelled: "market.cancelled",
  /** An active listing reached its `expiresAt`: its NFT may be listed again. */
  expired: "market.expired",
  /** Offers (lib/market/offer-book.ts): escrowed and active; sold; withdrawn; lapsed. */
  offerMade: "market.offerMade",
  offerAccepted: "market.offerAccepted",
  offerCancelled: "market.offerCancelled",
  offerExpired: "market.offerExpired",
  /** Auctions (lib/market/auction-book.ts): the NFT held; a bid in (and the one it beat paid back); the end. */
  auctionStarted: "market.auctionStarted",
  bidPlaced: "market.bidPlaced",
  bidRefunded: "market.bidRefunded",
  auctionSettled: "market.auctionSettled",
  auctionUnsold: "market.auctionUnsold",
  auctionCancelled: "market.auctionCancelled",
} as const;

export type ListingState = "active" | "reserved" | "sold" | "cancelled" | "expired";

export interface Listing {
  id: string;
  nftId: string;
  collectionId: string;
  sellerId: string;
  priceTokenId: string;
  price: string;
  state: ListingState;
  /** When an active listing stops being for sale (ISO), or null: until cancelled or sold. */
  expiresAt: string | null;
  createdAt: string;
  updatedAt: string;
}

/** What market.sold and the analytics need of a sale. */
export interface ListingEvent {
  listing: Listing;
  buyerId?: string;
  /**
   * A sale's royalty and who received it (market.sold; absent in events written before
   * it was added, and where the sale paid none).
   */
  royalty?: { to: string; amount: string };
}

/**
 * The market's escrow: the account of the tokens ledger where a buyer's money waits while a
 * purchase is in flight (later: offers and bids). Like a pool's account it is no user's:
 * readable as any account (its balance, its place among the holders), but only the
 * services that run sales may move tokens to or from it (mixins/accounts.mixin.ts), so a
 * seller can never take a buyer's money before the NFT has moved.
 */
export const ESCROW_ACCOUNT = "escrow_market";

export const isEscrowAccount = (account: string): boolean => account === ESCROW_ACCOUNT;

export type OfferState = "active" | "accepted" | "cancelled" | "expired";

export interface OfferTrait {
  trait_type: string;
  value: string | number;
}

/**
 * An offer as docs/api.md gives it: on one NFT (`nftId`), or on any NFT of a collection,
 * or on those with every one of `traits`; its price waits in escrow while it is active.
 */
export interface Offer {
  id: string;
  makerId: string;
  nftId: string | null;
  collectionId: string;
  traits: OfferTrait[];
  priceTokenId: string;
  price: string;
  state: OfferState;
  expiresAt: string | null;
  /** Once accepted: the NFT sold and who sold it. */
  soldNftId?: string;
  sellerId?: string;
  createdAt: string;
  updatedAt: string;
}

/** What the market.offer* events carry. */
export interface OfferEvent {
  offer: Offer;
  /** An accepted offer's royalty (to the collection's owner), a decimal string. */
  royalty?: string;
  royaltyTo?: string;
}

export type AuctionState = "active" | "settled" | "unsold" | "cancelled";

export interface AuctionBid {
  bidderId: string;
  amount: string;
}

/**
 * An English auction as docs/api.md gives it: the NFT held by the market while it runs,
 * the highest bid in escrow, `endsAt` pushed back by a bid near the end.
 */
export interface Auction {
  id: string;
  nftId: string;
  collectionId: string;
  sellerId: string;
  priceTokenId: string;
  reservePrice: string;
  minIncrementBps: number;
  endsAt: string;
  state: AuctionState;
  highestBid: AuctionBid | null;
  winnerId: string | null;
  createdAt: string;
  updatedAt: string;
}

/** What the market.auction* and market.bid* events carry. */
export interface AuctionEvent {
  auction: Auction;
  /** bidPlaced / bidRefunded: the bid. */
  bid?: AuctionBid & { id: string };
  /** auctionSettled: the royalty paid (a decimal string) and to whom. */
  royalty?: string;
  royaltyTo?: string;
}
