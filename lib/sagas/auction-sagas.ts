import type { AuctionClosing, PlacedBid } from "../market/auction-book";
import type { SagaDefinition, StepInput } from "./saga-definition";
import {
  escrowStep,
  fromEscrow,
  holdNftStep,
  moveNftStep,
  payoutStep,
  releaseNftStep,
} from "./sale-steps";
import { accountRule, idRule, sagaParams } from "./saga-params";
import { amountRule } from "../shared/amount";

/**
 * English auctions as sagas (lib/sagas/saga-engine.ts), the money only ever in a bidder's
 * account, the market's escrow, or paid out for an NFT that has moved:
 *
 *  - start: the auction, pending → its NFT held by the market (nfts.lock named by the
 *    auction's id: its seller can neither move nor approve it) → active.
 *  - bid: the amount from the bidder into escrow → the bid placed (one compare-and-set that
 *    checks it and makes it the highest; refused, the escrow is paid back; of unknown
 *    outcome, placed again by its id until it is in or refused) → forward only,
 *    the bid it beat paid back from escrow and its refund told. Of 50 racing bids each is
 *    in or refused, and each beaten one is paid back by the saga of the bid that beat it.
 *  - settle: the auction closed (once its end is past; a bid racing it is refused as
 *    ended) → the NFT moved from the seller to the winner under the hold → forward only,
 *    the price less the royalty to the seller, the royalty, the auction settled (or unsold
 *    without a bid, the NFT staying with the seller), the hold let go. Its key is derived
 *    from the auction, so whichever market replica sees the end first starts it, once.
 *  - cancel: cancelled by its seller before the first bid → the hold let go.
 */

export const START_AUCTION = "auction";
export const BID = "auctionBid";
export const SETTLE_AUCTION = "auctionSettle";
export const CANCEL_AUCTION = "auctionCancel";

export interface StartAuctionInput {
  auctionId: string;
  nftId: string;
  collectionId: string;
  sellerId: string;
  tokenId: string;
  reservePrice: string;
  minIncrementBps: number;
  endsAt: string;
  royaltyBps: number;
  royaltyTo: string;
}

export interface BidInput {
  auctionId: string;
  bidId: string;
  bidderId: string;
  tokenId: string;
  amount: string;
}

export interface EndAuctionInput {
  auctionId: string;
  nftId: string;
  sellerId: string;
  tokenId: string;
}

export const START_AUCTION_SAGA: SagaDefinition<StartAuctionInput> = {
  type: START_AUCTION,
  steps: [
    {
      name: "create",
      action: "market.auctionCreate",
      params: s => ({ ...s.input, sagaId: s.sagaId }),
      compensate: {
        action: "market.auctionDrop",
        params: s => ({ id: s.input.auctionId, sagaId: s.sagaId }),
      },
    },
    holdNftStep<StartAuctionInput>(s => s.input.auctionId),
    {
      name: "activate",
      action: "market.auctionActivate",
      forwardOnly: true,
      params: s => ({ id: s.input.auctionId, sagaId: s.sagaId }),
    },
  ],
  result: r => r.activate,
};

type B = StepInput<BidInput>;
const beatenOf = (s: B) => (s.results.place as PlacedBid | undefined)?.beaten ?? null;

export const BID_SAGA: SagaDefinition<BidInput> = {
  type: BID,
  steps: [
    escrowStep<BidInput>(
      i => i.bidderId,
      i => i.amount,
    ),
    {
      name: "place",
      action: "market.auctionPlaceBid",
      params: s => ({
        id: s.input.auctionId,
        bidId: s.input.bidId,
        sagaId: s.sagaId,
        bidderId: s.input.bidderId,
        amount: s.input.amount,
      }),
      // A bid whose outcome is unknown (a timeout, a node gone, a 5xx) is never undone: the
      // same bid again tells. In: the saga goes on (the bid it beat is paid back); refused
      // (ended, or beaten meanwhile: a refusal that lasts, so the first call cannot get in
      // later either): the escrow is paid back as for any refused bid.
      untilKnown: true,
      compensate: {
        // Only a log written before untilKnown can undo a bid of unknown outcome: refused
        // while the bid is in, so the escrow is never paid back for a bid that holds it.
        action: "market.auctionBidAbsent",
        params: s => ({ id: s.input.auctionId, bidId: s.input.bidId }),
      },
    },
    {
      name: "refundBeaten",
      action: "tokens.transferInternal",
      forwardOnly: true,
      skip: (s: B) => beatenOf(s) === null,
      params: s => {
        const b = beatenOf(s)!;
        return fromEscrow(s.input.tokenId, b.bidderId, b.amount, s.key);
      },
    },
    {
      name: "toldRefund",
      action: "market.auctionBidRefunded",
      forwardOnly: true,
      skip: (s: B) => beatenOf(s) === null,
      params: s => ({ id: s.input.auctionId, bidId: s.input.bidId }),
    },
  ],
  result: r => r.place,
};

type E = StepInput<EndAuctionInput>;
const saleOf = (s: E) => (s.results.close as AuctionClosing | undefined)?.sale ?? null;

export const SETTLE_AUCTION_SAGA: SagaDefinition<EndAuctionInput> = {
  type: SETTLE_AUCTION,
  steps: [
    {
      name: "close",
      action: "market.auctionClose",
      params: s => ({ id: s.input.auctionId, sagaId: s.sagaId }),
      compensate: {
        // Harmless when it never closed it: only this saga's close is undone.
        action: "market.auctionReopen",
        params: s => ({ id: s.input.auctionId, sagaId: s.sagaId }),
      },
    },
    moveNftStep<EndAuctionInput>(s => {
      const sale = saleOf(s);
      return sale && { from: s.input.sellerId, to: sale.winnerId, lock: s.input.auctionId };
    }),
    payoutStep<EndAuctionInput>("paySeller", s => {
      const sale = saleOf(s);
      return sale && { to: s.input.sellerId, amount: sale.sellerShare };
    }),
    payoutStep<EndAuctionInput>("payRoyalty", s => {
      const sale = saleOf(s);
      return sale && { to: sale.royaltyTo, amount: sale.royalty };
    }),
    {
      name: "finish",
      action: "market.auctionFinish",
      forwardOnly: true,
      params: s => ({ id: s.input.auctionId, sagaId: s.sagaId }),
    },
    releaseNftStep<EndAuctionInput>(s => s.input.auctionId),
  ],
  result: r => r.finish,
};

export const CANCEL_AUCTION_SAGA: SagaDefinition<EndAuctionInput> = {
  type: CANCEL_AUCTION,
  steps: [
    {
      name: "cancel",
      action: "market.auctionCancel",
      params: s => ({ id: s.input.auctionId, sagaId: s.sagaId, sellerId: s.input.sellerId }),
    },
    releaseNftStep<EndAuctionInput>(s => s.input.auctionId),
  ],
  result: r => r.cancel,
};

const endProps = { auctionId: idRule, nftId: idRule, sellerId: accountRule, tokenId: idRule };

/** The sagas service's actions that start these sagas: each saga's type, params and user. */
export const AUCTION_SAGA_STARTS = {
  auction: {
    type: START_AUCTION,
    user: (i: StartAuctionInput) => i.sellerId,
    params: sagaParams({
      ...endProps,
      collectionId: idRule,
      reservePrice: amountRule(),
      minIncrementBps: { type: "number", integer: true, min: 0, max: 10_000 },
      endsAt: { type: "string", max: 40 },
      royaltyBps: { type: "number", integer: true, min: 0, max: 10_000 },
      royaltyTo: accountRule,
    }),
  },
  auctionBid: {
    type: BID,
    user: (i: BidInput) => i.bidderId,
    params: sagaParams({
      auctionId: idRule,
      bidId: idRule,
      bidderId: accountRule,
      tokenId: idRule,
      amount: amountRule(),
    }),
  },
  auctionSettle: {
    type: SETTLE_AUCTION,
    user: (i: EndAuctionInput) => i.sellerId,
    params: sagaParams(endProps),
  },
  auctionCancel: {
    type: CANCEL_AUCTION,
    user: (i: EndAuctionInput) => i.sellerId,
    params: sagaParams(endProps),
  },
} as const;

export const AUCTION_SAGAS = [
  START_AUCTION_SAGA,
  BID_SAGA,
  SETTLE_AUCTION_SAGA,
  CANCEL_AUCTION_SAGA,
];
