import { parseAmount } from "./amount";
import type { Listing } from "./market-book";
import type { Nft } from "./nft-events";
import type { SagaDefinition, StepInput } from "./saga-definition";

/**
 * The NFT purchase of docs/api.md as a saga (lib/saga-engine.ts), all or nothing:
 *
 *   reserve the listing (active → reserved, a compare-and-set: of two buyers one wins)
 *   → pay the seller price − royalty → pay the collection's owner the royalty
 *   → move the NFT from the seller to the buyer → mark the listing sold.
 *
 * When a step fails, the finished ones are undone last first: the NFT back to the
 * seller, each payment back to the buyer, the listing active again. Each call is
 * idempotent by its step's key (tokens and nfts scope keys by the calling service); an
 * undo whose step's outcome is unknown replays the step with its key first, so it only
 * ever moves back what was moved. A payment of 0 (no royalty; a royalty of 100 %) is
 * skipped rather than recorded as a transfer.
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

/** floor(price × royaltyBps / 10000): BigInt division truncates, i.e. floors, for these. */
export function royaltyOf(price: string, royaltyBps: number): string {
  return ((parseAmount(price) * BigInt(royaltyBps)) / 10_000n).toString(10);
}

/** What the seller receives: the price less the royalty. */
export const sellerShare = (i: PurchaseInput): string =>
  (parseAmount(i.price) - parseAmount(i.royalty)).toString(10);

type S = StepInput<PurchaseInput>;

/** A payment step from the buyer to `to`, and its undo: the same amount back, keyed apart. */
function payment(
  name: string,
  to: (i: PurchaseInput) => string,
  amount: (i: PurchaseInput) => string,
) {
  return {
    name,
    action: "tokens.transferInternal",
    skip: (s: S) => amount(s.input) === "0",
    params: (s: S) => ({
      tokenId: s.input.tokenId,
      from: s.input.buyerId,
      to: to(s.input),
      amount: amount(s.input),
      idempotencyKey: s.key,
    }),
    compensate: {
      action: "tokens.transferInternal",
      params: (s: S) => ({
        tokenId: s.input.tokenId,
        from: to(s.input),
        to: s.input.buyerId,
        amount: amount(s.input),
        idempotencyKey: s.key,
      }),
      // Unknown whether it paid: the same call again tells (a 422 now: it never paid).
      needsResult: true,
    },
  };
}

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
    payment("paySeller", i => i.sellerId, sellerShare),
    payment(
      "payRoyalty",
      i => i.royaltyTo,
      i => i.royalty,
    ),
    {
      name: "moveNft",
      action: "nfts.transferFrom",
      params: s => ({
        id: s.input.nftId,
        from: s.input.sellerId,
        to: s.input.buyerId,
        idempotencyKey: s.key,
      }),
      compensate: {
        action: "nfts.transferFrom",
        params: s => ({
          id: s.input.nftId,
          from: s.input.buyerId,
          to: s.input.sellerId,
          idempotencyKey: s.key,
        }),
        // Unknown whether it moved: the same call again tells (a 409 now: it never did).
        needsResult: true,
      },
    },
    {
      name: "markSold",
      action: "market.sell",
      params: s => ({ id: s.input.listingId, sagaId: s.sagaId }),
    },
  ],
  result: (r): PurchaseResult => ({ listing: r.markSold as Listing, nft: r.moveNft as Nft }),
};
