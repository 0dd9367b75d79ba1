import { MARKET_EVENTS, type ListingEvent } from "../events/market";
import { NFT_EVENTS } from "../events/nfts";
import {
  SAGA_EVENTS,
  TOKEN_EVENTS,
  type DomainEvent,
  type SagaEnded,
  type Token,
  type TokenMetadata,
  type TokenTransferred,
} from "../events/domain";

/**
 * Pure parts of the read models (catalog views, analytics counters): the envelope check,
 * query building, view shaping and counter arithmetic, with no broker and no database.
 * The engines that keep them in stores are lib/read-models/catalog-stats.ts and
 * lib/read-models/analytics-counters.ts; mixins/read-model.mixin.ts feeds them from the channels.
 */

// ---------------------------------------------------------------------------------------
// Events as consumers receive them

/** An event with the channel it came on, once its envelope is checked. */
export interface Received {
  channel: string;
  event: DomainEvent;
}

/** The envelope check every consumer makes before trusting a message. */
export function isDomainEvent(value: unknown): value is DomainEvent<Record<string, unknown>> {
  const v = value as Partial<DomainEvent> | null;
  return (
    typeof v === "object" &&
    v !== null &&
    typeof v.eventId === "string" &&
    v.eventId.length > 0 &&
    typeof v.type === "string" &&
    typeof v.data === "object" &&
    v.data !== null
  );
}

// ---------------------------------------------------------------------------------------
// Catalog

export const CATALOG_SORTS = ["createdAt", "holders", "transfers"] as const;
export type CatalogSort = (typeof CATALOG_SORTS)[number];

/** A token as the catalog answers it: the docs/api.md token plus `featured` and `stats`. */
export interface CatalogToken extends Token {
  featured: boolean;
  stats: { holders: number; transfers: number };
}

/** The token fields a view stores, with lowercase copies for case-insensitive prefix search. */
export interface ViewTokenFields {
  name: string;
  symbol: string;
  nameLower: string;
  symbolLower: string;
  decimals: number;
  totalSupply: string;
  creatorId: string;
  metadata: TokenMetadata;
  createdAt: string;
}

export function viewTokenFields(token: Token): ViewTokenFields {
  return {
    name: token.name,
    symbol: token.symbol,
    nameLower: token.name.toLowerCase(),
    symbolLower: token.symbol.toLowerCase(),
    decimals: token.decimals,
    totalSupply: token.totalSupply,
    creatorId: token.creatorId,
    metadata: token.metadata ?? {},
    createdAt: token.createdAt,
  };
}

export interface ViewStats {
  holders: number;
  transfers: number;
  featured: boolean;
}

/** A token's campaign as the catalog last heard of it (marketing.* events). */
export interface ViewPromotion {
  promoted: boolean;
  /** The campaign's version that set `promoted`: an older event changes nothing. */
  campaignVersion: number;
}

/**
 * "Featured" is derived from events alone: a token many accounts hold, or one whose
 * marketing campaign is active. The threshold is a setting (CATALOG_FEATURED_MIN_HOLDERS).
 */
export function viewStats(
  holders: number,
  transfers: number,
  minHolders: number,
  promoted = false,
): ViewStats {
  return { holders, transfers, featured: holders >= minHolders || promoted };
}

const REGEXP_SPECIAL = /[.*+?^${}()|[\]\\]/g;

/**
 * An anchored pattern for "starts with `q`", every metacharacter escaped so user input
 * stays literal. A range [q, next) would do the same, but NeDB compares UTF-16 units
 * and MongoDB code points, which disagree above U+D7FF; MongoDB serves an anchored,
 * case-sensitive prefix pattern from the index just like a range.
 */
export function prefixPattern(q: string): RegExp {
  return new RegExp("^" + q.replace(REGEXP_SPECIAL, "\\$&"));
}

/** What a list is filtered and sorted by (catalog.list's params without the paging). */
export interface CatalogFilter {
  q?: string;
  creator?: string;
  sort?: CatalogSort;
  featured?: boolean;
}

/** Only complete, live views are listed: placeholders wait for tokens.created, tombstones stay hidden. */
export const VISIBLE = { hasToken: true, deleted: false } as const;

export function listQuery(p: CatalogFilter): Record<string, unknown> {
  const query: Record<string, unknown> = { ...VISIBLE };
  if (p.q !== undefined && p.q !== "") {
    const pattern = prefixPattern(p.q.toLowerCase());
    query.$or = [{ nameLower: { $regex: pattern } }, { symbolLower: { $regex: pattern } }];
  }
  if (p.creator !== undefined) query.creatorId = p.creator;
  if (p.featured !== undefined) query.featured = p.featured;
  return query;
}

/** Most first, newest first; `_id` last so pages do not overlap when values tie. */
export function listSort(sort: CatalogSort = "createdAt"): Record<string, 1 | -1> {
  if (sort === "createdAt") return { createdAt: -1, _id: -1 };
  return { [sort]: -1, createdAt: -1, _id: -1 };
}

export interface CatalogViewLike extends ViewTokenFields, ViewStats {
  _id: string;
}

export function toCatalogToken(v: CatalogViewLike): CatalogToken {
  return {
    id: v._id,
    name: v.name,
    symbol: v.symbol,
    decimals: v.decimals,
    totalSupply: v.totalSupply,
    creatorId: v.creatorId,
    metadata: v.metadata,
    createdAt: v.createdAt,
    featured: v.featured,
    stats: { holders: v.holders, transfers: v.transfers },
  };
}

/**
 * Stats of a token the catalog has not seen yet (read-after-write): just created, its
 * creator holds the whole supply and nothing moved. `known` are counts already gathered
 * from events that overtook tokens.created.
 */
export function freshStats(
  token: Token,
  minHolders: number,
  known?: { holders: number; transfers: number; promoted?: boolean },
): ViewStats {
  const promoted = known?.promoted ?? false;
  if (known && (known.holders > 0 || known.transfers > 0))
    return viewStats(known.holders, known.transfers, minHolders, promoted);
  return viewStats(token.totalSupply === "0" ? 0 : 1, 0, minHolders, promoted);
}

// ---------------------------------------------------------------------------------------
// Analytics

export interface Counters {
  tokens: number;
  transfers: number;
  nftsMinted: number;
  sales: number;
  /** Launch sagas by how they ended (the summary shows them as `launches`). */
  launchesCompleted: number;
  launchesCompensated: number;
  launchesFailed: number;
}
export const COUNTER_NAMES = [
  "tokens",
  "transfers",
  "nftsMinted",
  "sales",
  "launchesCompleted",
  "launchesCompensated",
  "launchesFailed",
] as const;

export function emptyCounters(): Counters {
  return {
    tokens: 0,
    transfers: 0,
    nftsMinted: 0,
    sales: 0,
    launchesCompleted: 0,
    launchesCompensated: 0,
    launchesFailed: 0,
  };
}

/** A launch saga's end counts under its outcome; other sagas' ends count nowhere. */
const launchEnded =
  (counter: "launchesCompleted" | "launchesCompensated" | "launchesFailed") =>
  (data: unknown): CounterDelta =>
    (data as SagaEnded).sagaType === "launch" ? { counters: { [counter]: 1 } } : {};

/** An amount of one token. */
export interface TokenAmount {
  tokenId: string;
  amount: string;
}

/**
 * What one event adds: counter increments and, for moves of value, volume of one token
 * (every transfer) or sales volume (NFT sales: their price, also counted as transfers).
 */
export interface CounterDelta {
  counters?: Partial<Counters>;
  volume?: TokenAmount;
  salesVolume?: TokenAmount;
}

/**
 * One entry per counted channel. `tokens` counts live tokens (a launch undone by its
 * saga deletes its token); transfers and volume are history and stay. A sale's payment
 * moves tokens too, so its price is in `volume` through its transfers and, once, in
 * `salesVolume`.
 */
export const ANALYTICS_RULES: Record<string, (data: unknown) => CounterDelta> = {
  [TOKEN_EVENTS.created]: () => ({ counters: { tokens: 1 } }),
  [TOKEN_EVENTS.deleted]: () => ({ counters: { tokens: -1 } }),
  [TOKEN_EVENTS.transferred]: data => {
    const t = data as TokenTransferred;
    return { counters: { transfers: 1 }, volume: { tokenId: t.tokenId, amount: t.amount } };
  },
  [NFT_EVENTS.minted]: () => ({ counters: { nftsMinted: 1 } }),
  [MARKET_EVENTS.sold]: data => {
    const { listing } = data as ListingEvent;
    return {
      counters: { sales: 1 },
      salesVolume: { tokenId: listing.priceTokenId, amount: listing.price },
    };
  },
  [SAGA_EVENTS.completed]: launchEnded("launchesCompleted"),
  [SAGA_EVENTS.compensated]: launchEnded("launchesCompensated"),
  [SAGA_EVENTS.failed]: launchEnded("launchesFailed"),
};

export function addCounters(base: Counters, delta: Partial<Counters>): Counters {
  const out = { ...base };
  for (const k of COUNTER_NAMES) out[k] = (base[k] ?? 0) + (delta[k] ?? 0);
  return out;
}

const DIGITS = /^(0|[1-9][0-9]*)$/;

/**
 * a + b over decimal strings with BigInt. Volume is a sum of many uint256 amounts, so it
 * may pass 2^256−1: no upper bound here, unlike balances.
 */
export function addAmounts(a: string, b: string): string {
  if (!DIGITS.test(a) || !DIGITS.test(b)) throw new Error(`Not an amount: "${a}" + "${b}"`);
  return (BigInt(a) + BigInt(b)).toString(10);
}

type LaunchCounter = "launchesCompleted" | "launchesCompensated" | "launchesFailed";

export interface AnalyticsSummary extends Omit<Counters, LaunchCounter> {
  /** Launch sagas by how they ended. */
  launches: { completed: number; compensated: number; failed: number };
  volumeByToken: Record<string, string>;
  /** What NFT sales paid, per price token. */
  salesVolumeByToken: Record<string, string>;
}
