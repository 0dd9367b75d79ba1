/**
 * Events of the marketplace (services/market.service.ts), through its outbox like the NFT
 * events (lib/nft-events.ts): the analytics and the metrics count sales.
 */

export const MARKET_EVENTS = {
  listed: "market.listed",
  sold: "market.sold",
  cancelled: "market.cancelled",
} as const;

export type ListingState = "active" | "reserved" | "sold" | "cancelled";

export interface Listing {
  id: string;
  nftId: string;
  collectionId: string;
  sellerId: string;
  priceTokenId: string;
  price: string;
  state: ListingState;
  createdAt: string;
  updatedAt: string;
}

/** What market.sold and the analytics need of a sale. */
export interface ListingEvent {
  listing: Listing;
  buyerId?: string;
}
