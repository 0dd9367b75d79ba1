import type { CollectionSpec, Doc, Store } from "../store/store";
import type { CatalogFilter, ViewPromotion, ViewStats, ViewTokenFields } from "./read-model";

/** The catalog read model's documents and collections (lib/read-models/catalog-stats.ts). */

export interface ViewDoc extends Doc, Partial<ViewTokenFields>, ViewStats, Partial<ViewPromotion> {
  hasToken: boolean;
  deleted: boolean;
  /** occurredAt of the event that last set the token fields ("" for none yet). */
  tokenAt: string;
  /** Bumped by every change of the stats: their compare-and-set. */
  rev: number;
  /** Keys of stats changes applied here whose sources are not written yet (see above). */
  pending: string[];
}

export interface BalanceDoc extends Doc {
  tokenId: string;
  account: string;
  amount: string;
  version: number;
  /** How often the view's holder count followed this balance: odd = counted as a holder. */
  flips: number;
}

export interface TransferDoc extends Doc {
  tokenId: string;
  /** When it was counted (ms since epoch): rows are pruned after the read model's retention. */
  at?: number;
}

/** The collections the engine works on, with the indexes its queries and the list need. */
export const CATALOG_COLLECTIONS = {
  views: {
    indexes: ["creatorId", "createdAt", "nameLower", "symbolLower", "holders", "transfers"],
  },
  balances: { indexes: ["tokenId"] },
  // Not by tokenId: NeDB's removal from a key holds O(its rows), and pruning removes many.
  transfers: { indexes: ["at"] },
} satisfies Record<string, CollectionSpec>;

export interface CatalogStores {
  views: Store<ViewDoc>;
  balances: Store<BalanceDoc>;
  transfers: Store<TransferDoc>;
}

export interface CatalogViewsSettings {
  /** Holders from which a token is featured (CATALOG_FEATURED_MIN_HOLDERS). */
  featuredMinHolders: number;
}

export interface CatalogPage {
  sort?: CatalogFilter["sort"];
  limit: number;
  offset: number;
}
