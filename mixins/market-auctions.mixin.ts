import { createHash } from "node:crypto";
import type { Context, ServiceSettingSchema } from "moleculer";
import { defineMixin, sagaStepAction } from "./define";
import { accountParam, idParam, pageParams, sagaStepParams } from "../lib/shared/params";
import { amountRule } from "../lib/shared/amount";
import { callerKey } from "../lib/shared/caller-key";
import { created, requireUserId, type GatewayContext } from "../lib/shared/context";
import { conflict, forbidden } from "../lib/shared/errors";
import type { Auction, AuctionState } from "../lib/events/market";
import type { Collection, Nft } from "../lib/events/nfts";
import {
  AuctionBook,
  DEFAULT_MIN_INCREMENT_BPS,
  checkBid,
  type AuctionDoc,
  type NewAuction,
  type PlacedBid,
} from "../lib/market/auction-book";
import type { BidInput, EndAuctionInput, StartAuctionInput } from "../lib/sagas/auction-sagas";
import type { OfferSagaParams } from "../lib/sagas/contract";
import type { Saga } from "../lib/sagas/saga-log";
import { sagaAnswer } from "../lib/sagas/saga-answer";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * The market's English auctions (docs/api.md "Marketplace"): the routes, and the steps the
 * auction sagas (lib/sagas/auction-sagas.ts, run by the sagas service) call back. The states
 * are lib/market/auction-book.ts; the money and the NFT move only in the sagas. Mixed into
 * the market service, which owns the auctions with its listings (its `auctions` and `bids`
 * collections, its outbox); its sweep starts the ending saga of every auction past its end.
 */

export interface AuctionsVars {
  auctions: AuctionBook;
}

export interface AuctionsMethods {
  /** Starts the ending saga of each active auction past its end; returns how many ended. */
  endAuctions(): Promise<number>;
  /** The answer of a route that ran an auction's saga: its result, the refusal, or 202. */
  auctionAnswer<T>(
    ctx: GatewayContext,
    saga: Saga,
    id: string,
    done: (r: unknown) => T,
  ): Promise<T>;
}

/** What the market service has besides (its nft and token lookups). */
interface MarketLookups {
  nft(ctx: Context, id: string): Promise<Nft>;
  requireToken(ctx: Context, tokenId: string): Promise<void>;
}

interface CreateParams {
  nftId: string;
  priceTokenId: string;
  reservePrice: string;
  minIncrementBps?: number;
  endsAt: string;
}
interface IdParams {
  id: string;
}
interface StepParams extends IdParams {
  sagaId: string;
}
interface ListParams {
  state?: AuctionState;
  collection?: string;
  seller?: string;
  limit: number;
  offset: number;
}

/** A bid as POST …/bids answers it. */
export interface BidAnswer {
  id: string;
  auctionId: string;
  bidderId: string;
  amount: string;
  auction: Auction;
}

const hashed = (prefix: string, key: string) =>
  `${prefix}_${createHash("sha256").update(key).digest("hex").slice(0, 24)}`;
const endInput = (d: AuctionDoc): EndAuctionInput => ({
  auctionId: d._id,
  nftId: d.nftId,
  sellerId: d.sellerId,
  tokenId: d.priceTokenId,
});

export const MarketAuctionsMixin = defineMixin<
  ServiceSettingSchema,
  AuctionsMethods & MarketLookups,
  AuctionsVars
>({
  actions: {
    createAuction: {
      openapi: {
        summary: "Auction an NFT (English auction: the market holds it until the end)",
        status: 201,
        alsoStatus: [202],
        response: schemas.Auction,
        errors: [403, 404],
      },
      params: {
        $$strict: "remove",
        nftId: idParam,
        priceTokenId: idParam,
        reservePrice: amountRule(),
        minIncrementBps: {
          type: "number",
          integer: true,
          min: 0,
          max: 10_000,
          optional: true,
          convert: true,
        },
        endsAt: { type: "string", max: 40 },
      },
      async handler(ctx: GatewayContext<CreateParams>): Promise<Auction> {
        const seller = requireUserId(ctx);
        const p = ctx.params;
        const minIncrementBps = p.minIncrementBps ?? DEFAULT_MIN_INCREMENT_BPS;
        AuctionBook.check({ endsAt: p.endsAt, minIncrementBps });
        const nft = await this.nft(ctx, p.nftId);
        if (nft.ownerId !== seller) throw forbidden("Only the NFT's owner may auction it");
        await this.requireToken(ctx, p.priceTokenId);
        const collection = await ctx.call<Collection, IdParams>("nfts.getCollection", {
          id: nft.collectionId,
        });
        const key = `auction:${callerKey(ctx)}`;
        const input: StartAuctionInput = {
          auctionId: hashed("auc", key),
          nftId: nft.id,
          collectionId: nft.collectionId,
          sellerId: seller,
          tokenId: p.priceTokenId,
          reservePrice: p.reservePrice,
          minIncrementBps,
          endsAt: new Date(p.endsAt).toISOString(),
          royaltyBps: collection.royaltyBps,
          royaltyTo: collection.ownerId,
        };
        const saga = await ctx.call<Saga, OfferSagaParams<StartAuctionInput>>("sagas.auction", {
          input,
          key,
        });
        return this.auctionAnswer(ctx, saga, input.auctionId, r =>
          created(ctx, `/api/market/auctions/${input.auctionId}`, r as Auction),
        );
      },
    },

    listAuctions: {
      openapi: { summary: "Auctions, newest first", response: schemas.page(schemas.Auction) },
      params: {
        $$strict: "remove",
        state: {
          type: "enum",
          values: ["active", "settled", "unsold", "cancelled"],
          optional: true,
        },
        collection: { ...idParam, optional: true },
        seller: { ...accountParam, optional: true },
        ...pageParams,
      },
      handler(ctx: Context<ListParams>) {
        const { limit, offset, ...f } = ctx.params;
        return this.auctions.find(f, limit, offset);
      },
    },

    getAuction: {
      openapi: { summary: "An auction", response: schemas.Auction },
      params: { $$strict: "remove", id: idParam },
      handler(ctx: Context<IdParams>): Promise<Auction> {
        return this.auctions.get(ctx.params.id);
      },
    },

    bid: {
      openapi: {
        summary: "Bid on an auction (escrowed; the bid it beats is paid back)",
        status: 201,
        alsoStatus: [202],
        response: schemas.AuctionBid,
        errors: [403, 404, 422],
      },
      params: { $$strict: "remove", id: idParam, amount: amountRule() },
      async handler(ctx: GatewayContext<IdParams & { amount: string }>): Promise<BidAnswer> {
        const bidder = requireUserId(ctx);
        const doc = await this.auctions.doc(ctx.params.id);
        // Refused before any money moves; the saga's own check is the one that decides.
        checkBid(doc, bidder, ctx.params.amount);
        const key = `bid:${callerKey(ctx)}`;
        const input: BidInput = {
          auctionId: doc._id,
          bidId: hashed("bid", key),
          bidderId: bidder,
          tokenId: doc.priceTokenId,
          amount: ctx.params.amount,
        };
        const saga = await ctx.call<Saga, OfferSagaParams<BidInput>>("sagas.auctionBid", {
          input,
          key,
        });
        return this.auctionAnswer(ctx, saga, doc._id, r => {
          const placed = r as PlacedBid;
          const bid = { ...placed.bid, auctionId: doc._id, auction: placed.auction };
          return created(ctx, `/api/market/auctions/${doc._id}`, bid);
        });
      },
    },

    cancelAuction: {
      openapi: {
        summary: "Cancel an auction before its first bid (its seller)",
        response: schemas.Auction,
        errors: [403],
      },
      params: { $$strict: "remove", id: idParam },
      async handler(ctx: GatewayContext<IdParams>): Promise<Auction> {
        const seller = requireUserId(ctx);
        const doc = await this.auctions.doc(ctx.params.id);
        if (doc.sellerId !== seller) throw forbidden("Only the seller may cancel the auction");
        if (doc.highestBid) throw conflict("The auction has bids");
        // One cancelling per state of the auction: a repeat finds it, a later try is new.
        const key = `cancel:${doc._id}:${doc.version}`;
        const input = endInput(doc);
        const saga = await ctx.call<Saga, OfferSagaParams<EndAuctionInput>>("sagas.auctionCancel", {
          input,
          key,
        });
        return this.auctionAnswer(ctx, saga, doc._id, r => r as Auction);
      },
    },

    // The steps of the auction sagas (public: the sagas service calls them, never routed).
    auctionCreate: {
      visibility: "public",
      params: {
        $$strict: "remove",
        sagaId: idParam,
        auctionId: idParam,
        nftId: idParam,
        collectionId: idParam,
        sellerId: accountParam,
        tokenId: idParam,
        reservePrice: amountRule(),
        minIncrementBps: { type: "number", integer: true, min: 0, max: 10_000 },
        endsAt: { type: "string", max: 40 },
        royaltyBps: { type: "number", integer: true, min: 0, max: 10_000 },
        royaltyTo: accountParam,
      },
      handler(ctx: Context<StartAuctionInput & { sagaId: string }>) {
        const { sagaId, auctionId, tokenId, ...rest } = ctx.params;
        const a: NewAuction = { ...rest, priceTokenId: tokenId };
        return this.auctions.create(auctionId, sagaId, a);
      },
    },
    auctionDrop: sagaStepAction<AuctionsVars>((s, id, sagaId) => s.auctions.drop(id, sagaId)),
    auctionActivate: sagaStepAction<AuctionsVars>((s, id, sagaId) =>
      s.auctions.activate(id, sagaId),
    ),
    auctionPlaceBid: {
      visibility: "public",
      params: { ...sagaStepParams, bidId: idParam, bidderId: accountParam, amount: amountRule() },
      handler(ctx: Context<StepParams & { bidId: string; bidderId: string; amount: string }>) {
        const p = ctx.params;
        return this.auctions.place(p.id, p.bidId, p.sagaId, p.bidderId, p.amount);
      },
    },
    auctionBidRefunded: {
      visibility: "public",
      params: { $$strict: "remove", id: idParam, bidId: idParam },
      handler(ctx: Context<IdParams & { bidId: string }>) {
        return this.auctions.refunded(ctx.params.id, ctx.params.bidId);
      },
    },
    auctionBidAbsent: {
      visibility: "public",
      params: { $$strict: "remove", id: idParam, bidId: idParam },
      handler(ctx: Context<IdParams & { bidId: string }>) {
        return this.auctions.bidAbsent(ctx.params.id, ctx.params.bidId);
      },
    },
    auctionClose: sagaStepAction<AuctionsVars>((s, id, sagaId) => s.auctions.close(id, sagaId)),
    auctionReopen: sagaStepAction<AuctionsVars>((s, id, sagaId) => s.auctions.reopen(id, sagaId)),
    auctionFinish: sagaStepAction<AuctionsVars>((s, id, sagaId) => s.auctions.finish(id, sagaId)),
    auctionCancel: {
      visibility: "public",
      params: { ...sagaStepParams, sellerId: accountParam },
      handler(ctx: Context<StepParams & { sellerId: string }>) {
        return this.auctions.cancel(ctx.params.id, ctx.params.sagaId, ctx.params.sellerId);
      },
    },
  },

  methods: {
    async endAuctions(): Promise<number> {
      let n = 0;
      for (const doc of await this.auctions.due()) {
        // Keyed by the auction's state: every replica that sees this end starts one saga;
        // a bid that pushed the end on (a new version) makes a later end a new one.
        const key = `settle:${doc._id}:${doc.version}`;
        const saga = await this.broker.call<Saga, OfferSagaParams<EndAuctionInput>>(
          "sagas.auctionSettle",
          { input: endInput(doc), key },
        );
        if (saga.state === "completed") n++;
      }
      return n;
    },

    auctionAnswer<T>(
      ctx: GatewayContext,
      saga: Saga,
      id: string,
      done: (r: unknown) => T,
    ): Promise<T> {
      return sagaAnswer(ctx, saga, `/api/market/auctions/${id}`, done, () =>
        this.auctions.get(id).catch(() => ({ id, state: "pending" })),
      );
    },
  },
});
