/**
 * Events of the NFT write model (services/nfts.service.ts), through its outbox like the
 * tokens events (lib/events/domain.ts): the analytics counts mints, the market learns that an
 * NFT moved away from a listing.
 */

export const NFT_EVENTS = {
  minted: "nfts.minted",
  transferred: "nfts.transferred",
  approved: "nfts.approved",
} as const;

export interface NftAttribute {
  trait_type: string;
  value: string | number;
}

export interface NftMetadata {
  name: string;
  description?: string;
  image?: string;
  attributes?: NftAttribute[];
}

/** An NFT as the API answers it. */
export interface Nft {
  id: string;
  collectionId: string;
  /** From 1 within its collection, without gaps. */
  serial: number;
  ownerId: string;
  /** Who may transfer it besides its owner; cleared by every transfer. */
  approved: string | null;
  metadata: NftMetadata;
  mintedAt: string;
}

/** A collection as the API answers it. */
export interface Collection {
  id: string;
  name: string;
  symbol: string;
  ownerId: string;
  maxSupply: number | null;
  /** Royalty to the owner on a sale, in basis points (0–10000). */
  royaltyBps: number;
  minted: number;
  createdAt: string;
}

export interface NftMinted {
  nft: Nft;
}

export interface NftTransferred {
  nftId: string;
  collectionId: string;
  from: string;
  to: string;
  /** The NFT's version after the move: orders the moves of one NFT. */
  version: number;
}

export interface NftApproved {
  nftId: string;
  owner: string;
  approved: string | null;
  version: number;
}
