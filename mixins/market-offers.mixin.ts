import { createHash } from "node:crypto";
import type { Context, ServiceSettingSchema } from "moleculer";
import { defineMixin, sagaStepAction } from "./define";
import {
  accountParam,
  idParam,
  pageParams,
  sagaStepParams,
  traitParam,
} from "../lib/shared/params";
import { amountRule } from "../lib/shared/amount";
import { callerKey } from "../lib/shared/caller-key";
import { created, requireUserId, type GatewayContext } from "../lib/shared/context";
import { conflict, forbidden, validationError } from "../lib/shared/errors";
import type { Offer, OfferState, OfferTrait } from "../lib/events/market";
import type { Collection, Nft } from "../lib/events/nfts";
import { OfferBook, offerMatches, type NewOffer } from "../lib/market/offer-book";
import {
  acceptInput,
  type AcceptOfferInput,
  type AcceptOfferResult,
  type CloseOfferInput,
  type MakeOfferInput,
} from "../lib/sagas/offer-sagas";
import type { OfferSagaParams } from "../lib/sagas/contract";
import type { Saga } from "../lib/sagas/saga-log";
import { sagaAnswer } from "../lib/sagas/saga-answer";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * The market's offers (docs/api.md "Marketplace"): the routes, and the steps the offer
 * sagas (lib/sagas/offer-sagas.ts, run by the sagas service) call back. The states are
 * lib/market/offer-book.ts; the money moves only in the sagas. Mixed into the market
 * service, which owns the offers with its listings (its `offers` collection, its outbox).
 */

export interface OffersVars {
  offers: OfferBook;
}

export interface OffersMethods {
  /** Closes (and pays back) the active offers past their expiry; returns how many. */
  expireOffers(): Promise<number>;
  /** The answer of a route that ran an offer's saga: its result, the refusal, or 202. */
  offerAnswer<T>(ctx: GatewayContext, saga: Saga, id: string, done: (r: unknown) => T): Promise<T>;
}

/** What the market service has besides (its nft and token lookups). */
interface MarketLookups {
  nft(ctx: Context, id: string): Promise<Nft>;
  requireToken(ctx: Context, tokenId: string): Promise<void>;
}

interface MakeParams {
  nftId?: string;
  collectionId?: string;
  traits?: OfferTrait[];
  priceTokenId: string;
  price: string;
  expiresAt?: string;
}
interface IdParams {
  id: string;
}
interface AcceptParams extends IdParams {
  nftId: string;
}
interface StepParams extends IdParams {
  sagaId: string;
}
interface ListParams {
  nft?: string;
  collection?: string;
  maker?: string;
  state?: OfferState;
  limit: number;
  offset: number;
}

/** An offer's id from its maker's request key: a retry of the request finds its offer. */
const offerIdOf = (key: string) =>
  `ofr_${createHash("sha256").update(key).digest("hex").slice(0, 24)}`;

export const MarketOffersMixin = defineMixin<
  ServiceSettingSchema,
  OffersMethods & MarketLookups,
  OffersVars
>({
  actions: {
    makeOffer: {
      openapi: {
        summary: "Offer a price for an NFT, or for a collection's NFTs (with traits)",
        status: 201,
        alsoStatus: [202],
        response: schemas.Offer,
        errors: [404, 422],
      },
      params: {
        $$strict: "remove",
        nftId: { ...idParam, optional: true },
        collectionId: { ...idParam, optional: true },
        traits: { type: "array", optional: true, max: 8, items: traitParam },
        priceTokenId: idParam,
        price: amountRule(),
        expiresAt: { type: "string", optional: true, max: 40 },
      },
      async handler(ctx: GatewayContext<MakeParams>): Promise<Offer> {
        const maker = requireUserId(ctx);
        const p = ctx.params;
        if ((p.nftId === undefined) === (p.collectionId === undefined))
          throw validationError("nftId", "give either nftId or collectionId");
        const collectionId =
          p.nftId !== undefined ? (await this.nft(ctx, p.nftId)).collectionId : p.collectionId!;
        if (p.nftId === undefined) await ctx.call("nfts.getCollection", { id: collectionId });
        const offer: NewOffer = {
          nftId: p.nftId ?? null,
          collectionId,
          traits: p.traits ?? [],
          priceTokenId: p.priceTokenId,
          price: p.price,
          expiresAt: p.expiresAt,
        };
        OfferBook.check(offer);
        await this.requireToken(ctx, p.priceTokenId);
        const key = `offer:${callerKey(ctx)}`;
        const { priceTokenId: tokenId, ...rest } = offer;
        const input: MakeOfferInput = { ...rest, tokenId, offerId: offerIdOf(key), makerId: maker };
        if (input.expiresAt === undefined) delete input.expiresAt;
        const saga = await ctx.call<Saga, OfferSagaParams>("sagas.offer", { input, key });
        return this.offerAnswer(ctx, saga, input.offerId, r => {
          created(ctx, `/api/market/offers/${input.offerId}`, r);
          return r as Offer;
        });
      },
    },

    listOffers: {
      openapi: { summary: "Offers, highest price first", response: schemas.page(schemas.Offer) },
      params: {
        $$strict: "remove",
        nft: { ...idParam, optional: true },
        collection: { ...idParam, optional: true },
        maker: { ...accountParam, optional: true },
        state: {
          type: "enum",
          values: ["active", "accepted", "cancelled", "expired"],
          optional: true,
        },
        ...pageParams,
      },
      handler(ctx: Context<ListParams>) {
        const { limit, offset, ...f } = ctx.params;
        return this.offers.find(f, limit, offset);
      },
    },

    getOffer: {
      openapi: { summary: "An offer", response: schemas.Offer },
      params: { $$strict: "remove", id: idParam },
      handler(ctx: Context<IdParams>): Promise<Offer> {
        return this.offers.get(ctx.params.id);
      },
    },

    acceptOffer: {
      openapi: {
        summary: "Accept an offer with an NFT of yours (a sale)",
        status: 201,
        alsoStatus: [202],
        response: schemas.OfferAccepted,
        errors: [403],
      },
      params: { $$strict: "remove", id: idParam, nftId: idParam },
      async handler(ctx: GatewayContext<AcceptParams>) {
        const seller = requireUserId(ctx);
        const offer = await this.offers.get(ctx.params.id);
        if (offer.state !== "active") throw conflict(`The offer is ${offer.state}`);
        const nft = await this.nft(ctx, ctx.params.nftId);
        if (nft.ownerId !== seller) throw forbidden("Only the NFT's owner may accept an offer");
        if (!offerMatches(offer, nft)) throw forbidden("The NFT does not match the offer");
        const collection = await ctx.call<Collection, IdParams>("nfts.getCollection", {
          id: nft.collectionId,
        });
        const input: AcceptOfferInput = acceptInput(offer, nft, collection);
        const key = `accept:${callerKey(ctx)}`;
        const saga = await ctx.call<Saga, OfferSagaParams>("sagas.offerAccept", { input, key });
        return this.offerAnswer(ctx, saga, offer.id, r => {
          const done = r as AcceptOfferResult;
          const sale = {
            nftId: nft.id,
            sellerId: input.sellerId,
            buyerId: input.makerId,
            priceTokenId: input.tokenId,
            price: input.price,
            royalty: input.royalty,
          };
          return created(ctx, `/api/market/offers/${offer.id}`, { offer: done.offer, sale });
        });
      },
    },

    cancelOffer: {
      openapi: { summary: "Withdraw an offer (its escrow paid back)", response: schemas.Offer },
      params: { $$strict: "remove", id: idParam },
      async handler(ctx: GatewayContext<IdParams>): Promise<Offer> {
        const maker = requireUserId(ctx);
        const doc = await this.offers.doc(ctx.params.id);
        if (doc.makerId !== maker) throw forbidden("Only the maker may cancel the offer");
        const input: CloseOfferInput = {
          offerId: doc._id,
          makerId: maker,
          how: "cancelled",
          tokenId: doc.priceTokenId,
          price: doc.price,
        };
        // One closing per state of the offer: a repeat finds it, a later try is new.
        const key = `close:${doc._id}:${doc.version}`;
        const saga = await ctx.call<Saga, OfferSagaParams>("sagas.offerClose", { input, key });
        return this.offerAnswer(ctx, saga, doc._id, r => r as Offer);
      },
    },

    // The steps of the offer sagas (public: the sagas service calls them, never routed).
    offerCreate: {
      visibility: "public",
      params: {
        $$strict: "remove",
        offerId: idParam,
        sagaId: idParam,
        makerId: accountParam,
        nftId: { ...idParam, nullable: true },
        collectionId: idParam,
        traits: { type: "array", max: 8, items: traitParam },
        tokenId: idParam,
        price: amountRule(),
        expiresAt: { type: "string", optional: true, max: 40 },
      },
      handler(ctx: Context<MakeOfferInput & { sagaId: string }>) {
        const p = ctx.params;
        return this.offers.create(p.offerId, p.makerId, p.sagaId, {
          nftId: p.nftId,
          collectionId: p.collectionId,
          traits: p.traits,
          priceTokenId: p.tokenId,
          price: p.price,
          expiresAt: p.expiresAt,
        });
      },
    },
    offerDrop: sagaStepAction<OffersVars>((s, id, sagaId) => s.offers.drop(id, sagaId)),
    offerActivate: sagaStepAction<OffersVars>((s, id, sagaId) => s.offers.activate(id, sagaId)),
    offerReserve: {
      visibility: "public",
      params: { ...sagaStepParams, nftId: idParam, sellerId: accountParam },
      async handler(ctx: Context<StepParams & { nftId: string; sellerId: string }>) {
        // The NFT as it is now: who owns it and its traits decide, not what the route saw.
        const nft = await this.nft(ctx, ctx.params.nftId);
        return this.offers.reserve(ctx.params.id, ctx.params.sagaId, nft, ctx.params.sellerId);
      },
    },
    offerRelease: sagaStepAction<OffersVars>((s, id, sagaId) => s.offers.release(id, sagaId)),
    offerAccept: {
      visibility: "public",
      params: { ...sagaStepParams, royalty: amountRule(), royaltyTo: accountParam },
      handler(ctx: Context<StepParams & { royalty: string; royaltyTo: string }>) {
        const p = ctx.params;
        return this.offers.accept(p.id, p.sagaId, p.royalty, p.royaltyTo);
      },
    },
    offerClose: {
      visibility: "public",
      params: {
        ...sagaStepParams,
        how: { type: "enum", values: ["cancelled", "expired"] },
        makerId: accountParam,
      },
      handler(ctx: Context<StepParams & { how: "cancelled" | "expired"; makerId: string }>) {
        const p = ctx.params;
        return this.offers.close(p.id, p.sagaId, p.how, p.makerId);
      },
    },
    offerReopen: sagaStepAction<OffersVars>((s, id, sagaId) => s.offers.reopen(id, sagaId)),
  },

  methods: {
    async expireOffers(): Promise<number> {
      let n = 0;
      for (const doc of await this.offers.lapsed()) {
        const input: CloseOfferInput = {
          offerId: doc._id,
          makerId: doc.makerId,
          how: "expired",
          tokenId: doc.priceTokenId,
          price: doc.price,
        };
        const key = `close:${doc._id}:${doc.version}`;
        const saga = await this.broker.call<Saga, OfferSagaParams>("sagas.offerClose", {
          input,
          key,
        });
        if (saga.state === "completed") n++;
      }
      return n;
    },

    offerAnswer<T>(
      ctx: GatewayContext,
      saga: Saga,
      id: string,
      done: (r: unknown) => T,
    ): Promise<T> {
      return sagaAnswer(ctx, saga, `/api/market/offers/${id}`, done, () =>
        this.offers.get(id).catch(() => ({ id, state: "pending" })),
      );
    },
  },
});
