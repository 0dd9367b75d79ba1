import type { Collection, Nft, NftMetadata } from "../events/nfts";
import type { CollectionSpec, Doc, Store } from "../store/store";

/** The NFT write model's documents (lib/nfts/nft-registry.ts), and how the API shows them. */

/** A mint of the former design, recorded on its collection with its metadata. */
export interface LegacyPendingMint {
  serial: number;
  key: string;
  to: string;
  metadata: NftMetadata;
  at: string;
}

export interface CollectionDoc extends Doc, Omit<Collection, "id"> {
  version: number;
  /** The create call's key: a retry answers the collection it made. */
  createKey: string;
  /** Only in files written before mint marks: recover() finishes and clears them. */
  pending?: LegacyPendingMint[];
}

/** A mint under way: written before its NFT, removed once its event is written. */
export interface MintMarkDoc extends Doc {
  key: string;
  collectionId: string;
  /** ms since epoch. */
  at: number;
}

export type NftChange =
  { type: "transferred"; from: string; to: string } | { type: "approved"; approved: string | null };

export interface NftDoc extends Doc, Omit<Nft, "id"> {
  version: number;
  mintKey: string;
  /** The key of the last change, and that change while its event is not in the outbox. */
  lastKey?: string;
  /** The sale (a saga id) that holds the NFT: only its own moves go through. */
  lockedBy?: string;
  unpublished?: NftChange;
}

export interface NftStores {
  collections: Store<CollectionDoc>;
  nfts: Store<NftDoc>;
  mints: Store<MintMarkDoc>;
}

export const NFT_COLLECTIONS: Record<keyof NftStores, CollectionSpec> = {
  collections: { unique: ["createKey"], indexes: ["ownerId"] },
  nfts: { unique: ["mintKey"], indexes: ["ownerId", "collectionId"] },
  mints: { unique: ["key"] },
};

export const toCollection = (c: CollectionDoc): Collection => ({
  id: c._id,
  name: c.name,
  symbol: c.symbol,
  ownerId: c.ownerId,
  maxSupply: c.maxSupply,
  royaltyBps: c.royaltyBps,
  minted: c.minted,
  createdAt: c.createdAt,
});

export const toNft = (n: NftDoc): Nft => ({
  id: n._id,
  collectionId: n.collectionId,
  serial: n.serial,
  ownerId: n.ownerId,
  approved: n.approved,
  metadata: n.metadata,
  mintedAt: n.mintedAt,
});
