import { ESCROW_ACCOUNT } from "../events/market";
import type { SagaStep, StepInput } from "./saga-definition";

/**
 * The steps the market's sales share (the purchase, the accepted offer, the settled
 * auction): money a buyer commits goes into the escrow account (lib/events/market.ts),
 * which only these sagas pay out of, so a payout never lacks the funds; the NFT held for
 * the sale is let go at the end.
 */

/** tokens.transferInternal's params: `amount` of `tokenId` from escrow to `to`, under `key`. */
export const fromEscrow = (tokenId: string, to: string, amount: string, key: string) => ({
  tokenId,
  from: ESCROW_ACCOUNT,
  to,
  amount,
  idempotencyKey: key,
});

/**
 * The "escrow" step: `amount` from `payer` into escrow, undone by paying it back under the
 * same key. Unknown whether it paid, the undo asks again (a 422 then: it never paid).
 */
export function escrowStep<I extends { tokenId: string }>(
  payer: (input: I) => string,
  amount: (input: I) => string,
): SagaStep<I> {
  return {
    name: "escrow",
    action: "tokens.transferInternal",
    params: s => ({
      tokenId: s.input.tokenId,
      from: payer(s.input),
      to: ESCROW_ACCOUNT,
      amount: amount(s.input),
      idempotencyKey: s.key,
    }),
    compensate: {
      action: "tokens.transferInternal",
      params: s => fromEscrow(s.input.tokenId, payer(s.input), amount(s.input), s.key),
      needsResult: true,
    },
  };
}

/**
 * A payout from escrow once the NFT has moved: forward only (it cannot lack the funds),
 * skipped when `pay` says none is due (no sale, or a part of 0).
 */
export function payoutStep<I extends { tokenId: string }>(
  name: string,
  pay: (s: StepInput<I>) => { to: string; amount: string } | null,
): SagaStep<I> {
  return {
    name,
    action: "tokens.transferInternal",
    forwardOnly: true,
    skip: s => (pay(s)?.amount ?? "0") === "0",
    params: s => {
      const { to, amount } = pay(s)!;
      return fromEscrow(s.input.tokenId, to, amount, s.key);
    },
  };
}

/**
 * The NFT held for the sale under `lock` (its owner can neither move nor approve it), let
 * go by the undo: harmless when it never held it, only this hold is let go.
 */
export function holdNftStep<I extends { nftId: string; sellerId: string }>(
  lock: (s: StepInput<I>) => string,
): SagaStep<I> {
  return {
    name: "holdNft",
    action: "nfts.lock",
    params: s => ({ id: s.input.nftId, owner: s.input.sellerId, lock: lock(s) }),
    compensate: { action: "nfts.unlock", params: s => ({ id: s.input.nftId, lock: lock(s) }) },
  };
}

/**
 * The NFT moved `from` → `to` under the sale's hold, or skipped when `move` says there is
 * no sale. Undone by the move back (the NFT is still held: its new owner cannot have
 * moved it); unknown whether it moved, the undo asks again (a 409 then: it never did).
 */
export function moveNftStep<I extends { nftId: string }>(
  move: (s: StepInput<I>) => { from: string; to: string; lock: string } | null,
): SagaStep<I> {
  const transfer = (s: StepInput<I>, back: boolean) => {
    const { from, to, lock } = move(s)!;
    return {
      id: s.input.nftId,
      from: back ? to : from,
      to: back ? from : to,
      lock,
      idempotencyKey: s.key,
    };
  };
  return {
    name: "moveNft",
    action: "nfts.transferFrom",
    skip: s => move(s) === null,
    params: s => transfer(s, false),
    compensate: {
      action: "nfts.transferFrom",
      params: s => transfer(s, true),
      needsResult: true,
    },
  };
}

/** The last step of a sale: the NFT's hold (`lock`) let go. Forward only. */
export function releaseNftStep<I extends { nftId: string }>(
  lock: (s: StepInput<I>) => string,
): SagaStep<I> {
  return {
    name: "releaseNft",
    action: "nfts.unlock",
    forwardOnly: true,
    params: s => ({ id: s.input.nftId, lock: lock(s) }),
  };
}
