import type { CollectionSpec, Doc, Store } from "../store/store";
import type { CatalogFilter, ViewPromotion, ViewStats, ViewTokenFields } from "./read-model";

/** The catalog read model's documents and collections (lib/read-models/catalog-stats.ts). */

export interface ViewDoc extends Doc, Partial<ViewTokenFields>, ViewStats, Partial<ViewPromotion> {
  hasToken: boolean;
  deleted: boolean;
  /** occurredAt of the event that last set the token fields ("" for none yet). */
  tokenAt: string;
}

export interface BalanceDoc extends Doc {
  tokenId: string;
  account: string;
  amount: string;
  version: number;
}

/** The collections the engine works on, with the indexes its queries and the list need. */
export const CATALOG_COLLECTIONS = {
  views: {
    indexes: ["creatorId", "createdAt", "nameLower", "symbolLower", "holders", "transfers"],
  },
  balances: { indexes: ["tokenId"] },
} satisfies Record<string, CollectionSpec>;

export interface CatalogStores {
  views: Store<ViewDoc>;
  balances: Store<BalanceDoc>;
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
