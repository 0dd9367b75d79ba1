import { CATALOG_GET_PARAMS, CATALOG_LIST_PARAMS } from "../lib/read-models/catalog-params";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import {
  cacheTtlFromSettings,
  ReadModelMixin,
  type ReadModelMethods,
  type ReadModelSettings,
  type ReadModelVars,
} from "../mixins/read-model.mixin";
import { ReadFallbackMixin } from "../mixins/read-fallback.mixin";
import { APPLIED_COLLECTION } from "../lib/read-models/applied-events";
import {
  CatalogCacheCleaner,
  getCacheKey,
  type CatalogCacheSettings,
} from "../lib/read-models/catalog-cache";
import {
  CATALOG_COLLECTIONS,
  CatalogViews,
  catalogStores,
  type ViewDoc,
} from "../lib/read-models/catalog-stats";
import { CatalogPromotions } from "../lib/read-models/catalog-promotions";
import { envInt, envStr } from "../lib/shared/env";
import { isNotFound, notFound } from "../lib/shared/errors";
import {
  MARKETING_EVENTS,
  TOKEN_EVENTS,
  type CampaignChanged,
  type DomainEvent,
  type Token,
  type TokenCreated,
  type TokenDeleted,
  type TokenTransferred,
  type TokenUpdated,
} from "../lib/events/domain";
import {
  freshStats,
  toCatalogToken,
  type CatalogSort,
  type CatalogToken,
  type Received,
  type ViewTokenFields,
} from "../lib/read-models/read-model";
import * as schemas from "../lib/gateway/openapi/schemas";
import type { TxStores } from "../lib/store/store";
import {
  NFT_VIEW_COLLECTIONS,
  NFT_VIEW_EVENTS,
  NftViews,
  nftViewStores,
  type CollectionStats,
  type NftQuery,
} from "../lib/read-models/nft-views";
import { idParam, pageParams } from "../lib/shared/params";
import { repeat } from "../lib/shared/repeat";

/**
 * catalog: the CQRS read model of tokens (docs/architecture.md) behind GET /api/tokens and
 * GET /api/tokens/:id. The view and its stats are lib/read-models/catalog-stats.ts (how they stay
 * exact under redelivery and reordering is explained there); the channels, batches and
 * the transaction that applies a batch with its eventIds are mixins/read-model.mixin.ts; cache cleaning is
 * lib/read-models/catalog-cache.ts. This file is the wiring: settings, params, handlers.
 *
 * Reads are cached in the broker cacher and cleaned by the events; a token not seen yet
 * is read from the write model (tokens.get), so a client reads what it just created.
 */

export interface CatalogSettings extends ReadModelSettings, CatalogCacheSettings {
  featuredMinHolders: number;
  /** Seconds a read may be served from cache; events clean it sooner. */
  cacheTtl: number;
}

export interface ListParams {
  q?: string;
  creator?: string;
  sort: CatalogSort;
  featured?: boolean;
  limit: number;
  offset: number;
}

export interface GetParams {
  id: string;
}

export interface ChangedParams {
  tokenIds?: string[];
}

interface CatalogMethods {
  /** Broadcasts which tokens a batch changed, so every replica's cache forgets them. */
  announce(fresh: Received[]): Promise<void>;
  /** 404 for a collection neither this view nor the nfts service knows. */
  requireCollection(ctx: Context, id: string): Promise<void>;
}

interface CatalogVars {
  /** The engine on the database, for reads. */
  views: CatalogViews;
  /** NFTs and collections (lib/read-models/nft-views.ts), for reads. */
  nftViews: NftViews;
  cache: CatalogCacheCleaner;
  stopSalesPrune: () => void;
}

type CatalogThis = Service<CatalogSettings> &
  CatalogMethods &
  CatalogVars &
  ReadModelMethods &
  ReadModelVars &
  DbMethods &
  DbVars;

/** Each event as the engine takes it: the envelope is checked, its data is the channel's. */
const eventsOf = <T>(batch: Received[]) => batch.map(r => r.event as DomainEvent<T>);

/** The engine on a batch's transaction (mixins/read-model.mixin.ts). */
function viewsIn(svc: { settings: object }, tx: TxStores): CatalogViews {
  return new CatalogViews(catalogStores(tx), svc.settings as CatalogSettings);
}

/** Campaign changes, in the order they came (each applies only if newer than the view's). */
async function applyCampaigns(this: { settings: object }, fresh: Received[], tx: TxStores) {
  const views = viewsIn(this, tx);
  const settings = this.settings as CatalogSettings;
  const promotions = new CatalogPromotions(catalogStores(tx).views, views, settings);
  for (const e of eventsOf<CampaignChanged>(fresh)) await promotions.changed(e);
}

const CatalogService: ServiceSchema<
  CatalogSettings,
  CatalogMethods & ReadModelMethods & DbMethods,
  CatalogVars & ReadModelVars & DbVars
> = {
  name: "catalog",
  mixins: [
    DbMixin({ ...CATALOG_COLLECTIONS, ...NFT_VIEW_COLLECTIONS, ...APPLIED_COLLECTION }),
    // Serves the last good read when the store or tokens.get (the fallback) fails.
    ReadFallbackMixin({ actions: ["list", "get"] }),
    // Approvals change nothing a catalog shows: not consumed.
    ReadModelMixin<CatalogVars & CatalogMethods>({
      channels: {
        [TOKEN_EVENTS.created]: {
          async apply(fresh, tx) {
            const views = viewsIn(this, tx);
            for (const e of eventsOf<TokenCreated>(fresh)) await views.created(e);
          },
        },
        [TOKEN_EVENTS.updated]: {
          async apply(fresh, tx) {
            const views = viewsIn(this, tx);
            for (const e of eventsOf<TokenUpdated>(fresh)) await views.updated(e);
          },
        },
        [TOKEN_EVENTS.deleted]: {
          async apply(fresh, tx) {
            const views = viewsIn(this, tx);
            for (const e of eventsOf<TokenDeleted>(fresh)) await views.deleted(e);
          },
        },
        // Many, and all on their token's view: applied per token in batches.
        [TOKEN_EVENTS.transferred]: {
          key: e => (e.data as TokenTransferred).tokenId,
          apply(fresh, tx) {
            return viewsIn(this, tx).transferred(eventsOf<TokenTransferred>(fresh));
          },
        },
        // A campaign on or off: `featured` follows it (lib/read-models/catalog-promotions.ts).
        [MARKETING_EVENTS.activated]: { apply: applyCampaigns },
        [MARKETING_EVENTS.deactivated]: { apply: applyCampaigns },
        // NFTs, listings and sales: a collection's events are applied together, in order.
        ...Object.fromEntries(
          NFT_VIEW_EVENTS.map(channel => [
            channel,
            {
              key: (e: DomainEvent) => `nfts:${collectionIdOf(e)}`,
              apply: (fresh: Received[], tx: TxStores) =>
                new NftViews(nftViewStores(tx)).apply(fresh.map(r => r.event)),
            },
          ]),
        ),
      },
      settled(_batch, fresh) {
        return this.announce(fresh);
      },
    }),
  ],

  settings: {
    readModel: {
      // Replicas sharing a group apply each event once (on a shared database); give each
      // NeDB replica its own group so each holds a whole read model.
      group: envStr("CATALOG_GROUP", "catalog"),
      // The view does not depend on the order of transfers, so many at once cost nothing
      // in correctness, and only what arrives together can share a batch.
      maxInFlight: { [TOKEN_EVENTS.transferred]: envInt("CATALOG_TRANSFERS_IN_FLIGHT", 200) },
    },
    featuredMinHolders: envInt("CATALOG_FEATURED_MIN_HOLDERS", 3),
    cacheTtl: envInt("CATALOG_CACHE_TTL", 30),
    cleanWindowMs: envInt("CATALOG_CLEAN_WINDOW_MS", 100),
    recleanMs: envInt("CATALOG_RECLEAN_MS", 250),
  },

  /** The reads' cache TTL is a setting; this is where it can still go in (see there). */
  merged(schema) {
    cacheTtlFromSettings(schema, ["list", "get"], schema.settings?.cacheTtl);
  },

  actions: {
    list: {
      openapi: { summary: "Search the tokens (the catalog)", response: schemas.CatalogPage },
      params: CATALOG_LIST_PARAMS,
      cache: { keys: ["q", "creator", "sort", "featured", "limit", "offset"] },
      handler(ctx: Context<ListParams>): Promise<{ rows: CatalogToken[]; total: number }> {
        const { limit, offset, sort } = ctx.params;
        return this.views.list(ctx.params, { sort, limit, offset });
      },
    },

    get: {
      openapi: { summary: "A token of the catalog", response: schemas.CatalogToken },
      params: CATALOG_GET_PARAMS,
      cache: {
        keys: ["id"],
        keygen: (_a, _o, ctx) => getCacheKey((ctx.params as GetParams).id),
      },
      async handler(ctx: Context<GetParams>): Promise<CatalogToken> {
        const view = await this.views.find(ctx.params.id);
        if (view?.deleted) throw notFound("Token");
        if (view?.hasToken) return toCatalogToken(view as ViewDoc & ViewTokenFields);

        // Not consumed yet: ask the write model, so a client reads what it just created.
        let token: Token;
        try {
          token = await ctx.call<Token, GetParams>("tokens.get", { id: ctx.params.id });
        } catch (err) {
          // Only "no such token" is a 404; tokens being down must not look like absence.
          if (isNotFound(err)) throw notFound("Token");
          throw err;
        }
        // A campaign's event may have come before the token's (the placeholder keeps it).
        const stats = freshStats(token, this.settings.featuredMinHolders, view ?? undefined);
        return {
          ...token,
          featured: stats.featured,
          stats: { holders: stats.holders, transfers: stats.transfers },
        };
      },
    },

    collectionStats: {
      openapi: {
        summary: "A collection's market figures",
        response: schemas.CollectionStats,
        errors: [404],
      },
      params: { $$strict: "remove", id: idParam },
      async handler(ctx: Context<GetParams>): Promise<CollectionStats> {
        await this.requireCollection(ctx, ctx.params.id);
        return this.nftViews.stats(ctx.params.id);
      },
    },

    collectionTraits: {
      openapi: {
        summary: "A collection's traits and how many NFTs have each value",
        response: schemas.CollectionTraits,
      },
      params: { $$strict: "remove", id: idParam },
      async handler(ctx: Context<GetParams>) {
        await this.requireCollection(ctx, ctx.params.id);
        return this.nftViews.traits(ctx.params.id);
      },
    },

    /** For nfts.list: the NFTs found by trait or ordered by price (not routed). */
    nftIds: {
      visibility: "public",
      params: {
        $$strict: "remove",
        collection: { type: "string", optional: true },
        owner: { type: "string", optional: true },
        traits: {
          type: "record",
          optional: true,
          key: { type: "string" },
          value: { type: "string" },
        },
        sort: { type: "enum", values: ["recent", "serial", "price"] },
        ...pageParams,
      },
      handler(ctx: Context<NftQuery>) {
        return this.nftViews.find(ctx.params);
      },
    },
  },

  events: {
    /** Broadcast after every applied batch, so each replica's cache forgets it (Memory cacher). */
    "catalog.changed": {
      async handler(ctx: Context<ChangedParams>) {
        await this.cache.clean(ctx.params.tokenIds ?? []);
      },
    },
  },

  methods: {
    async requireCollection(ctx: Context, id: string): Promise<void> {
      if (await this.nftViews.knows(id)) return;
      await ctx.call("nfts.getCollection", { id }); // its 404 is the answer
    },

    async announce(fresh: Received[]): Promise<void> {
      const tokens = fresh.filter(r => r.event.type.startsWith("tokens."));
      if (tokens.length === 0) return;
      const tokenIds = new Set(tokens.map(r => tokenIdOf(r.event)));
      const params: ChangedParams = { tokenIds: [...tokenIds] };
      await this.broker.broadcast("catalog.changed", params);
    },
  } satisfies CatalogMethods & ThisType<CatalogThis>,

  created() {
    this.cache = new CatalogCacheCleaner(this.broker.cacher, this.settings, this.logger);
  },

  /** Runs after DbMixin's `started` (mixins first) and before the channels subscribe. */
  started() {
    this.views = new CatalogViews(catalogStores(this.database), this.settings);
    this.nftViews = new NftViews(nftViewStores(this.database));
    // Sales past the longest window (30 days) only ever counted in the all-time totals.
    this.stopSalesPrune = repeat(
      3600_000,
      () => this.nftViews.pruneSales(),
      err => this.logger.warn({ err }, "Pruning old sales failed"),
    );
  },

  async stopped() {
    this.cache.stop();
    this.stopSalesPrune?.();
  },
};

/** The collection an nfts.* or market.* event is about. */
function collectionIdOf(event: DomainEvent): string {
  const data = event.data as {
    nft?: { collectionId: string };
    listing?: { collectionId: string };
    collectionId?: string;
  };
  return data.nft?.collectionId ?? data.listing?.collectionId ?? data.collectionId ?? "";
}

/** The token a tokens.* event is about. */
function tokenIdOf(event: DomainEvent): string {
  const data = event.data as { token?: Token; tokenId?: string };
  return data.token?.id ?? data.tokenId ?? "";
}

export default CatalogService;
