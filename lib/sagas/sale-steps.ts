import { ESCROW_ACCOUNT } from "../events/market";
import type { SagaStep } from "./saga-definition";

/**
 * The market's escrow moves, shared by the purchase, offer and auction sagas: money a
 * buyer commits goes into the escrow account (lib/events/market.ts), which only these
 * sagas pay out of, so a payout never lacks the funds.
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
