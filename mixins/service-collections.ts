import type { CollectionSpec } from "../lib/store/store";
import { ACTIVITY_COLLECTIONS } from "../lib/activity/activity-log";
import { DEX_COLLECTIONS } from "../lib/dex/liquidity-pools";
import { AUCTION_COLLECTIONS } from "../lib/market/auction-book";
import { MARKET_COLLECTIONS } from "../lib/market/market-book";
import { OFFER_COLLECTIONS } from "../lib/market/offer-book";
import { MARKETING_COLLECTIONS } from "../lib/marketing/campaigns";
import { OUTBOX_COLLECTION } from "../lib/messaging/outbox";
import { NFT_COLLECTIONS } from "../lib/nfts/documents";
import { ANALYTICS_COLLECTIONS } from "../lib/read-models/analytics-counters";
import { APPLIED_COLLECTION } from "../lib/read-models/applied-events";
import { CATALOG_COLLECTIONS } from "../lib/read-models/catalog-documents";
import { NFT_VIEW_COLLECTIONS } from "../lib/read-models/nft-views";
import { SAGA_COLLECTIONS } from "../lib/sagas/saga-log";
import { TOKENS_COLLECTIONS } from "../lib/tokens/ledger";
import { USERS_COLLECTIONS } from "../lib/users/users";
import { WEBHOOKS_COLLECTIONS } from "../lib/webhooks/documents";

/**
 * Every service with stores, by name (its DATA_DIR folder), and the collections it opens:
 * what its DbMixin(...) is given, the outbox's and the applied events' included. For what
 * must know them without starting a broker (bin/migrate.ts). Built from the same specs the
 * services pass; test/unit/mixins/service-collections.test.ts starts each service and
 * checks that it opens exactly these.
 */
export const SERVICE_COLLECTIONS: Record<string, Record<string, CollectionSpec>> = {
  activity: { ...ACTIVITY_COLLECTIONS, ...APPLIED_COLLECTION, ...OUTBOX_COLLECTION },
  analytics: { ...ANALYTICS_COLLECTIONS, ...APPLIED_COLLECTION },
  catalog: { ...CATALOG_COLLECTIONS, ...NFT_VIEW_COLLECTIONS, ...APPLIED_COLLECTION },
  dex: DEX_COLLECTIONS,
  market: {
    ...MARKET_COLLECTIONS,
    ...OFFER_COLLECTIONS,
    ...AUCTION_COLLECTIONS,
    ...APPLIED_COLLECTION,
    ...OUTBOX_COLLECTION,
  },
  marketing: { ...MARKETING_COLLECTIONS, ...OUTBOX_COLLECTION },
  nfts: { ...NFT_COLLECTIONS, ...OUTBOX_COLLECTION },
  sagas: { ...SAGA_COLLECTIONS, ...OUTBOX_COLLECTION },
  tokens: { ...TOKENS_COLLECTIONS, ...OUTBOX_COLLECTION },
  users: USERS_COLLECTIONS,
  webhooks: { ...WEBHOOKS_COLLECTIONS, ...APPLIED_COLLECTION },
};
