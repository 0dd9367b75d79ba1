import { accountParam, idParam, pageParams, sagaStepParams } from "../lib/shared/params";
import { sagaStepAction } from "../mixins/define";
import type { Context, Service, ServiceSchema } from "moleculer";
import type { DbMethods, DbVars } from "../mixins/db.mixin";
import { storesWithOutbox, type OutboxMethods, type OutboxVars } from "../mixins/outbox.mixin";
import {
  AccountsMixin,
  type AccountsMethods,
  type AccountsSettings,
} from "../mixins/accounts.mixin";
import {
  ReadModelMixin,
  type ReadModelMethods,
  type ReadModelSettings,
  type ReadModelVars,
} from "../mixins/read-model.mixin";
import { amountRule } from "../lib/shared/amount";
import { envInt } from "../lib/shared/env";
import { repeat } from "../lib/shared/repeat";
import { APPLIED_COLLECTION } from "../lib/read-models/applied-events";
import { callerKey } from "../lib/shared/caller-key";
import { created, requireUserId, type GatewayContext } from "../lib/shared/context";
import { clientError, conflict, isNotFound, notFound } from "../lib/shared/errors";
import { MARKET_COLLECTIONS, MarketBook } from "../lib/market/market-book";
import { OFFER_COLLECTIONS, OfferBook } from "../lib/market/offer-book";
import {
  MarketOffersMixin,
  type OffersMethods,
  type OffersVars,
} from "../mixins/market-offers.mixin";
import { AUCTION_COLLECTIONS, AuctionBook } from "../lib/market/auction-book";
import { MarketRetention } from "../lib/market/market-retention";
import {
  MarketAuctionsMixin,
  type AuctionsMethods,
  type AuctionsVars,
} from "../mixins/market-auctions.mixin";
import { MarketOpsMixin } from "../mixins/market-ops.mixin";
import type { Listing, ListingState } from "../lib/events/market";
import { NFT_EVENTS, type Collection, type Nft, type NftTransferred } from "../lib/events/nfts";
import { purchaseInput, type PurchaseResult } from "../lib/sagas/purchase-saga";
import type { Saga } from "../lib/sagas/saga-log";
import type { PurchaseParams } from "../lib/sagas/contract";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * market: NFT listings and their sale (docs/api.md "Marketplace"). The listings are
 * lib/market/market-book.ts; a purchase is a saga (lib/sagas/purchase-saga.ts) run by the sagas
 * service, whose steps call back `reserve` / `release` / `sell` here. Ownership comes
 * from nfts.get, prices must be in a token tokens.get knows. The market consumes
 * nfts.transferred (a read-model consumer) to cancel listings whose NFT moved away by a
 * plain transfer. Lists are served here from the service's own store.
 */

type MarketOwnSettings = ReadModelSettings & {
  /** How often listings past their expiresAt are written `expired` (ms; 0: never). */
  expiryIntervalMs: number;
  /** A bid this close to an auction's end moves the end to this long after it (ms). */
  auctionExtensionMs: number;
  /** Ended listings, offers and auctions (with their bids) are removed this long after (ms). */
  retentionMs: number;
  /** How often they are pruned (ms; 0: never). */
  pruneIntervalMs: number;
};
type MarketSettings = MarketOwnSettings & AccountsSettings;

interface MarketVars extends OffersVars, AuctionsVars {
  book: MarketBook;
  stopExpiry: () => void;
  stopPrune: () => void;
}

interface MarketMethods {
  /** The NFT as nfts knows it; 404 when there is none. */
  nft(ctx: Context, id: string): Promise<Nft>;
  /** 404 (naming the field) unless the price token exists. */
  requireToken(ctx: Context, tokenId: string): Promise<void>;
  /** The purchase's saga as it ended, as the HTTP answer of POST …/buy. */
  sold(ctx: GatewayContext, listing: Listing, saga: Saga): Promise<BuyAnswer>;
  /** Cancels the live listings of NFTs no longer their seller's. */
  nftsMoved(ctx: Context | null, nftIds: string[]): Promise<void>;
}

type MarketThis = Service<MarketSettings> &
  MarketMethods &
  OffersMethods &
  AuctionsMethods &
  MarketVars &
  DbMethods &
  DbVars &
  OutboxVars &
  OutboxMethods &
  AccountsMethods &
  ReadModelMethods &
  ReadModelVars;

export interface CreateListingParams {
  nftId: string;
  priceTokenId: string;
  price: string;
  expiresAt?: string;
}
export interface ListListingsParams {
  state?: ListingState;
  collection?: string;
  seller?: string;
  limit: number;
  offset: number;
}
export interface IdParams {
  id: string;
}
export interface SagaStepParams {
  id: string;
  sagaId: string;
}
export interface SellParams extends SagaStepParams {
  royalty?: string;
  royaltyTo?: string;
}
export interface ReserveParams extends SagaStepParams {
  buyerId: string;
}
export interface BuyAnswer {
  listing: Listing;
  sagaId: string;
}

const MarketService: ServiceSchema<
  MarketOwnSettings,
  MarketMethods & DbMethods & OutboxMethods & AccountsMethods & ReadModelMethods,
  DbVars & OutboxVars & MarketVars & ReadModelVars,
  MarketThis
> = {
  name: "market",
  mixins: [
    ...storesWithOutbox({
      ...MARKET_COLLECTIONS,
      ...OFFER_COLLECTIONS,
      ...AUCTION_COLLECTIONS,
      ...APPLIED_COLLECTION,
    }),
    MarketOffersMixin,
    MarketAuctionsMixin,
    MarketOpsMixin,
    AccountsMixin,
    ReadModelMixin<MarketVars & MarketMethods>({
      // Listings are cancelled through the market's engine, which writes on its own.
      outsideTransaction: true,
      channels: {
        // An NFT that moved away from its seller can no longer be sold by them.
        [NFT_EVENTS.transferred]: {
          key: e => (e.data as NftTransferred).nftId,
          apply(fresh) {
            const ids = fresh.map(r => (r.event.data as NftTransferred).nftId);
            return this.nftsMoved(null, [...new Set(ids)]);
          },
        },
      },
    }),
  ],

  settings: {
    readModel: { group: "market" },
    expiryIntervalMs: envInt("MARKET_EXPIRY_INTERVAL_MS", 5000),
    auctionExtensionMs: envInt("AUCTION_EXTENSION_MS", 300_000),
    retentionMs: envInt("MARKET_RETENTION_MS", 30 * 24 * 3600_000),
    pruneIntervalMs: envInt("MARKET_PRUNE_INTERVAL_MS", 10 * 60_000),
  },

  actions: {
    create: {
      openapi: {
        summary: "List an NFT for sale",
        status: 201,
        response: schemas.Listing,
        errors: [403],
      },
      params: {
        $$strict: "remove",
        nftId: idParam,
        priceTokenId: idParam,
        price: amountRule(),
        expiresAt: { type: "string", optional: true, max: 40 },
      },
      async handler(ctx: GatewayContext<CreateListingParams>): Promise<Listing> {
        const seller = requireUserId(ctx);
        const { nftId, priceTokenId, price, expiresAt } = ctx.params;
        const nft = await this.nft(ctx, nftId);
        if (nft.ownerId === seller) await this.requireToken(ctx, priceTokenId);
        if (await this.auctions.liveOn(nftId))
          throw conflict("The NFT is in an auction", [
            { field: "nftId", message: "in an auction" },
          ]);
        const listing = await this.book.list(seller, callerKey(ctx), {
          nft,
          priceTokenId,
          price,
          expiresAt,
        });
        return created(ctx, `/api/market/listings/${listing.id}`, listing);
      },
    },

    list: {
      openapi: { summary: "Listings, newest first", response: schemas.page(schemas.Listing) },
      params: {
        $$strict: "remove",
        state: {
          type: "enum",
          values: ["active", "reserved", "sold", "cancelled", "expired"],
          optional: true,
        },
        collection: { ...idParam, optional: true },
        seller: { ...accountParam, optional: true },
        ...pageParams,
      },
      async handler(ctx: Context<ListListingsParams>) {
        const { state, collection, limit, offset } = ctx.params;
        let seller: string | undefined;
        if (ctx.params.seller !== undefined) {
          const found = await this.findAccount(ctx, ctx.params.seller);
          if (found === null) return { rows: [], total: 0 };
          seller = found;
        }
        return this.book.find({ state, collection, seller }, limit, offset);
      },
    },

    get: {
      openapi: { summary: "A listing", response: schemas.Listing },
      params: { $$strict: "remove", id: idParam },
      handler(ctx: Context<IdParams>): Promise<Listing> {
        return this.book.get(ctx.params.id);
      },
    },

    cancel: {
      openapi: {
        summary: "Cancel a listing (its seller)",
        response: schemas.Listing,
        errors: [403],
      },
      params: { $$strict: "remove", id: idParam },
      handler(ctx: GatewayContext<IdParams>): Promise<Listing> {
        return this.book.cancel(ctx.params.id, requireUserId(ctx));
      },
    },

    buy: {
      openapi: {
        summary: "Buy a listing (a purchase saga)",
        status: 201,
        alsoStatus: [202],
        response: schemas.Purchase,
        errors: [403, 422],
      },
      params: { $$strict: "remove", id: idParam },
      async handler(ctx: GatewayContext<IdParams>): Promise<BuyAnswer> {
        const buyer = requireUserId(ctx);
        const listing = await this.book.get(ctx.params.id);
        if (listing.state === "active") {
          // Moved away by a plain transfer and not yet heard of: cancelled now, not bought.
          const nft = await this.nft(ctx, listing.nftId);
          if (nft.ownerId !== listing.sellerId) {
            await this.nftsMoved(ctx, [nft.id]);
            throw conflict("The listing is no longer active: its NFT changed hands");
          }
        }
        const collection = await ctx.call<Collection, IdParams>("nfts.getCollection", {
          id: listing.collectionId,
        });
        const input = purchaseInput(listing, buyer, collection);
        // Whatever the listing's state: the saga's reservation decides (409 unless active),
        // and a retry of this request's key answers its first purchase.
        const saga = await ctx.call<Saga, PurchaseParams>("sagas.purchase", {
          input,
          key: `buy:${callerKey(ctx)}`,
        });
        return this.sold(ctx, listing, saga);
      },
    },

    // Internal: the purchase saga's steps (lib/sagas/purchase-saga.ts), each idempotent per saga.
    reserve: {
      visibility: "public",
      params: { ...sagaStepParams, buyerId: accountParam },
      handler(ctx: Context<ReserveParams>): Promise<Listing> {
        return this.book.reserve(ctx.params.id, ctx.params.sagaId, ctx.params.buyerId);
      },
    },

    release: sagaStepAction<MarketVars>((s, id, sagaId) => s.book.release(id, sagaId)),

    sell: {
      visibility: "public",
      params: {
        ...sagaStepParams,
        // What the sale paid the collection's owner: market.sold tells it (activity rows).
        royalty: amountRule({ optional: true }),
        royaltyTo: { ...idParam, optional: true },
      },
      handler(ctx: Context<SellParams>): Promise<Listing> {
        const { id, sagaId, royalty, royaltyTo } = ctx.params;
        const paid =
          royalty !== undefined && royaltyTo !== undefined
            ? { to: royaltyTo, amount: royalty }
            : undefined;
        return this.book.sell(id, sagaId, paid);
      },
    },
  },

  methods: {
    async nft(ctx: Context, id: string): Promise<Nft> {
      try {
        return await ctx.call<Nft, IdParams>("nfts.get", { id });
      } catch (err) {
        if (isNotFound(err)) throw notFound("NFT");
        throw err; // nfts down stays a 503
      }
    },

    async requireToken(ctx: Context, tokenId: string): Promise<void> {
      try {
        await ctx.call("tokens.get", { id: tokenId });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        throw clientError("NOT_FOUND", "Token not found", [
          { field: "priceTokenId", message: "no such token" },
        ]);
      }
    },

    async sold(ctx: GatewayContext, listing: Listing, saga: Saga): Promise<BuyAnswer> {
      const location = `/api/market/listings/${listing.id}`;
      if (saga.state === "completed") {
        const result = saga.result as PurchaseResult;
        return created(ctx, location, { listing: result.listing, sagaId: saga.id });
      }
      if (saga.state === "running" || saga.state === "compensating") {
        // Not ended within the wait: 202, and the listing tells how it ends.
        ctx.meta.$statusCode = 202;
        ctx.meta.$responseHeaders = { ...ctx.meta.$responseHeaders, Location: location };
        return { listing: await this.book.get(listing.id), sagaId: saga.id };
      }
      const e = saga.error;
      if (saga.state === "compensated" && e && e.type !== "INTERNAL_ERROR")
        throw clientError(e.type, e.message); // a refusal the saga recorded, as it was
      // A step broke, or an undo kept failing (the saga is logged for a person): a 500.
      throw new Error(`Purchase ${saga.id} ended ${saga.state}`);
    },

    async nftsMoved(ctx: Context | null, nftIds: string[]): Promise<void> {
      for (const id of nftIds) {
        let owner: string;
        try {
          // The owner now, not the event's: events of one NFT may arrive out of order.
          owner = (await (ctx ?? this.broker).call<Nft, IdParams>("nfts.get", { id })).ownerId;
        } catch (err) {
          if (isNotFound(err)) continue;
          throw err; // redelivered later
        }
        await this.book.nftMoved(id, owner);
      }
    },
  } satisfies MarketMethods & ThisType<MarketThis>,

  async started() {
    const outbox = this.openOutbox();
    this.book = new MarketBook(this.database, outbox);
    this.offers = new OfferBook(this.database, outbox);
    this.auctions = new AuctionBook(this.database, outbox, this.settings.auctionExtensionMs);
    outbox.start();
    // Every replica sweeps; each listing's expiry is a transaction, and each offer's expiry
    // and each auction's end a saga keyed by its state, so one of them wins: the auction's
    // end is a durable timer (its endsAt in the store) that fires once whatever node is up.
    this.stopExpiry = repeat(
      this.settings.expiryIntervalMs,
      async () => {
        await this.book.expireDue();
        await this.expireOffers();
        await this.endAuctions();
      },
      err =>
        this.logger.warn(
          { err },
          "Expiring listings or offers, or ending auctions, failed; the next run tries again",
        ),
    );
    // Every replica prunes too: removing what another removed first is harmless.
    const retention = new MarketRetention(this.database);
    this.stopPrune = repeat(
      this.settings.pruneIntervalMs,
      async () => {
        const pruned = await retention.prune(new Date(Date.now() - this.settings.retentionMs));
        if (Object.values(pruned).some(n => n > 0)) this.logger.info({ pruned }, "Market pruned");
      },
      err => this.logger.warn({ err }, "Market prune failed; the next run tries again"),
    );
  },

  stopped() {
    this.stopExpiry?.();
    this.stopPrune?.();
  },
};

export default MarketService;
