import { amountRule, parseAmount } from "../shared/amount";
import type { Listing } from "../events/market";
import type { Collection, Nft } from "../events/nfts";
import type { SagaDefinition } from "./saga-definition";
import { escrowStep, holdNftStep, moveNftStep, payoutStep, releaseNftStep } from "./sale-steps";
import { accountRule, idRule, sagaParams } from "./saga-params";

/**
 * The NFT purchase of docs/api.md as a saga (lib/sagas/saga-engine.ts), all or nothing:
 *
 *   reserve the listing (active → reserved, a compare-and-set: of two buyers one wins)
 *   → hold the NFT for this sale (its seller can no longer move or approve it)
 *   → move the price from the buyer into the market's escrow (lib/sagas/sale-steps.ts)
 *   → move the NFT from the seller to the buyer (still held)
 *   ─ past this point the sale is done and only goes forward ─
 *   → pay the seller price − royalty from escrow → pay the royalty from escrow
 *   → mark the listing sold → let go of the NFT.
 *
 * The buyer's money never sits where the seller can take it before the NFT is the
 * buyer's, and nothing is ever taken back from a seller: when a step before the move
 * fails, the finished ones are undone last first (the NFT back to the seller, the escrow
 * back to the buyer, the hold let go, the listing active again), each of which cannot
 * fail for lack of funds or ownership. Each call is idempotent by its step's key (tokens
 * and nfts scope keys by the calling service); an undo whose step's outcome is unknown
 * replays the step with its key first, so it only ever moves back what was moved. A
 * payment of 0 (no royalty; a royalty of 100 %) is skipped rather than recorded.
 */

export interface PurchaseInput {
  listingId: string;
  nftId: string;
  sellerId: string;
  buyerId: string;
  /** The price token and the two parts of the price, decimal strings of base units. */
  tokenId: string;
  price: string;
  royalty: string;
  /** The collection's owner, who receives the royalty. */
  royaltyTo: string;
}

export interface PurchaseResult {
  listing: Listing;
  nft: Nft;
}

export const PURCHASE = "purchase";

/** The purchase of `listing` by `buyerId`, the royalty by the collection's terms. */
export function purchaseInput(
  listing: Listing,
  buyerId: string,
  collection: Pick<Collection, "royaltyBps" | "ownerId">,
): PurchaseInput {
  return {
    listingId: listing.id,
    nftId: listing.nftId,
    sellerId: listing.sellerId,
    buyerId,
    tokenId: listing.priceTokenId,
    price: listing.price,
    royalty: royaltyOf(listing.price, collection.royaltyBps),
    royaltyTo: collection.ownerId,
  };
}

/** floor(price × royaltyBps / 10000): BigInt division truncates, i.e. floors, for these. */
export function royaltyOf(price: string, royaltyBps: number): string {
  return ((parseAmount(price) * BigInt(royaltyBps)) / 10_000n).toString(10);
}

/** What the seller receives: the price less the royalty. */
export const sellerShare = (i: { price: string; royalty: string }): string =>
  (parseAmount(i.price) - parseAmount(i.royalty)).toString(10);

export const PURCHASE_SAGA: SagaDefinition<PurchaseInput> = {
  type: PURCHASE,
  steps: [
    {
      name: "reserve",
      action: "market.reserve",
      params: s => ({ id: s.input.listingId, sagaId: s.sagaId, buyerId: s.input.buyerId }),
      compensate: {
        action: "market.release",
        // Harmless when it never reserved: only this saga's reservation is released.
        params: s => ({ id: s.input.listingId, sagaId: s.sagaId }),
      },
    },
    holdNftStep<PurchaseInput>(s => s.sagaId),
    escrowStep<PurchaseInput>(
      i => i.buyerId,
      i => i.price,
    ),
    moveNftStep<PurchaseInput>(s => ({
      from: s.input.sellerId,
      to: s.input.buyerId,
      lock: s.sagaId,
    })),
    payoutStep<PurchaseInput>("paySeller", s => ({
      to: s.input.sellerId,
      amount: sellerShare(s.input),
    })),
    payoutStep<PurchaseInput>("payRoyalty", s => ({
      to: s.input.royaltyTo,
      amount: s.input.royalty,
    })),
    {
      name: "markSold",
      action: "market.sell",
      forwardOnly: true,
      params: s => ({
        id: s.input.listingId,
        sagaId: s.sagaId,
        royalty: s.input.royalty,
        royaltyTo: s.input.royaltyTo,
      }),
    },
    releaseNftStep<PurchaseInput>(s => s.sagaId),
  ],
  result: (r): PurchaseResult => ({ listing: r.markSold as Listing, nft: r.releaseNft as Nft }),
};

/** The params of the sagas service's action that starts a purchase. */
export const PURCHASE_PARAMS = sagaParams({
  listingId: idRule,
  nftId: idRule,
  sellerId: accountRule,
  buyerId: accountRule,
  tokenId: idRule,
  price: amountRule(),
  royalty: amountRule(),
  royaltyTo: accountRule,
});
