import type { Collection, Nft } from "../events/nfts";
import type { CollectionSpec, Doc, Store } from "../store/store";

/** The NFT write model's documents (lib/nfts/nft-registry.ts), and how the API shows them. */

export interface CollectionDoc extends Doc, Omit<Collection, "id"> {
  version: number;
  /** The create call's key: a retry answers the collection it made. */
  createKey: string;
}

export type NftChange =
  { type: "transferred"; from: string; to: string } | { type: "approved"; approved: string | null };

export interface NftDoc extends Doc, Omit<Nft, "id"> {
  version: number;
  mintKey: string;
  /** The key of the last change: the same call again answers the NFT as it is. */
  lastKey?: string;
  /** The sale (a saga id) that holds the NFT: only its own moves go through. */
  lockedBy?: string;
}

export interface NftStores {
  collections: Store<CollectionDoc>;
  nfts: Store<NftDoc>;
}

export const NFT_COLLECTIONS: Record<keyof NftStores, CollectionSpec> = {
  collections: { unique: ["createKey"], indexes: ["ownerId"] },
  nfts: { unique: ["mintKey"], indexes: ["ownerId", "collectionId", "serial"] },
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
