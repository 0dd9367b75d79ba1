import type { Offer, OfferTrait } from "../events/market";
import type { Nft } from "../events/nfts";
import type { SagaDefinition } from "./saga-definition";
import {
  escrowStep,
  fromEscrow,
  holdNftStep,
  moveNftStep,
  payoutStep,
  releaseNftStep,
} from "./sale-steps";
import { accountRule, idRule, sagaParams } from "./saga-params";
import { royaltyOf, sellerShare } from "./purchase-saga";
import { amountRule } from "../shared/amount";

/**
 * Offers as sagas (lib/sagas/saga-engine.ts), each all or nothing, the money only ever in
 * the maker's account, the market's escrow, or paid out for an NFT that has moved:
 *
 *  - make: the offer, pending → its price from the maker into escrow → active. A maker
 *    short of funds gets the 422 and no offer exists.
 *  - accept: the offer held for one owner's NFT (of two owners, one) → the NFT held for
 *    this sale → moved from the owner to the maker; then, forward only, the price less the
 *    royalty from escrow to the owner, the royalty to the collection's owner, the offer
 *    accepted, the NFT let go. The escrow was paid when the offer was made, so an accepted
 *    offer can never lack the money, and nothing is taken back from a seller.
 *  - close: the offer cancelled by its maker, or expired → its escrow paid back (forward
 *    only). An acceptance racing a cancellation: the offer's state decides, one wins.
 */

export const MAKE_OFFER = "offer";
export const ACCEPT_OFFER = "offerAccept";
export const CLOSE_OFFER = "offerClose";

export interface MakeOfferInput {
  offerId: string;
  makerId: string;
  nftId: string | null;
  collectionId: string;
  traits: OfferTrait[];
  tokenId: string;
  price: string;
  expiresAt?: string;
}

export interface AcceptOfferInput {
  offerId: string;
  nftId: string;
  sellerId: string;
  makerId: string;
  tokenId: string;
  price: string;
  royalty: string;
  royaltyTo: string;
}

export interface CloseOfferInput {
  offerId: string;
  makerId: string;
  how: "cancelled" | "expired";
  tokenId: string;
  price: string;
}

export interface AcceptOfferResult {
  offer: Offer;
  nft: Nft;
}

/** The acceptance of `offer` with `nft` by its owner, the royalty by the collection's terms. */
export function acceptInput(
  offer: Offer,
  nft: Nft,
  collection: { royaltyBps: number; ownerId: string },
): AcceptOfferInput {
  return {
    offerId: offer.id,
    nftId: nft.id,
    sellerId: nft.ownerId,
    makerId: offer.makerId,
    tokenId: offer.priceTokenId,
    price: offer.price,
    royalty: royaltyOf(offer.price, collection.royaltyBps),
    royaltyTo: collection.ownerId,
  };
}

export const MAKE_OFFER_SAGA: SagaDefinition<MakeOfferInput> = {
  type: MAKE_OFFER,
  steps: [
    {
      name: "create",
      action: "market.offerCreate",
      params: s => ({ ...s.input, sagaId: s.sagaId }),
      compensate: {
        action: "market.offerDrop",
        params: s => ({ id: s.input.offerId, sagaId: s.sagaId }),
      },
    },
    escrowStep<MakeOfferInput>(
      i => i.makerId,
      i => i.price,
    ),
    {
      name: "activate",
      action: "market.offerActivate",
      forwardOnly: true,
      params: s => ({ id: s.input.offerId, sagaId: s.sagaId }),
    },
  ],
  result: r => r.activate,
};

export const ACCEPT_OFFER_SAGA: SagaDefinition<AcceptOfferInput> = {
  type: ACCEPT_OFFER,
  steps: [
    {
      name: "reserve",
      action: "market.offerReserve",
      params: s => ({
        id: s.input.offerId,
        sagaId: s.sagaId,
        nftId: s.input.nftId,
        sellerId: s.input.sellerId,
      }),
      compensate: {
        action: "market.offerRelease",
        params: s => ({ id: s.input.offerId, sagaId: s.sagaId }),
      },
    },
    holdNftStep<AcceptOfferInput>(s => s.sagaId),
    moveNftStep<AcceptOfferInput>(s => ({
      from: s.input.sellerId,
      to: s.input.makerId,
      lock: s.sagaId,
    })),
    payoutStep<AcceptOfferInput>("paySeller", s => ({
      to: s.input.sellerId,
      amount: sellerShare(s.input),
    })),
    payoutStep<AcceptOfferInput>("payRoyalty", s => ({
      to: s.input.royaltyTo,
      amount: s.input.royalty,
    })),
    {
      name: "markAccepted",
      action: "market.offerAccept",
      forwardOnly: true,
      params: s => ({
        id: s.input.offerId,
        sagaId: s.sagaId,
        royalty: s.input.royalty,
        royaltyTo: s.input.royaltyTo,
      }),
    },
    releaseNftStep<AcceptOfferInput>(s => s.sagaId),
  ],
  result: (r): AcceptOfferResult => ({ offer: r.markAccepted as Offer, nft: r.releaseNft as Nft }),
};

export const CLOSE_OFFER_SAGA: SagaDefinition<CloseOfferInput> = {
  type: CLOSE_OFFER,
  steps: [
    {
      name: "close",
      action: "market.offerClose",
      params: s => ({
        id: s.input.offerId,
        sagaId: s.sagaId,
        how: s.input.how,
        makerId: s.input.makerId,
      }),
      compensate: {
        // Harmless when it never closed it: only this saga's close is undone.
        action: "market.offerReopen",
        params: s => ({ id: s.input.offerId, sagaId: s.sagaId }),
      },
    },
    {
      name: "refund",
      action: "tokens.transferInternal",
      forwardOnly: true,
      params: s => fromEscrow(s.input.tokenId, s.input.makerId, s.input.price, s.key),
    },
  ],
  result: r => r.close,
};

/** The params of the sagas service's actions that start these sagas. */
export const MAKE_OFFER_PARAMS = sagaParams({
  offerId: idRule,
  makerId: accountRule,
  nftId: { ...idRule, nullable: true },
  collectionId: idRule,
  traits: { type: "array", max: 8, items: "object" },
  tokenId: idRule,
  price: amountRule(),
  expiresAt: { type: "string", max: 40, optional: true },
});

export const ACCEPT_OFFER_PARAMS = sagaParams({
  offerId: idRule,
  nftId: idRule,
  sellerId: accountRule,
  makerId: accountRule,
  tokenId: idRule,
  price: amountRule(),
  royalty: amountRule(),
  royaltyTo: accountRule,
});

export const CLOSE_OFFER_PARAMS = sagaParams({
  offerId: idRule,
  makerId: accountRule,
  how: { type: "enum", values: ["cancelled", "expired"] },
  tokenId: idRule,
  price: amountRule(),
});
