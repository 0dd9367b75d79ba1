/**
 * What other services send to tokens' internal actions (docs/architecture.md rule 6): the
 * dex and the sagas call tokens.transferInternal with these params.
 */

/** tokens.transferInternal: moves tokens for `from`, once per key (scoped by the caller). */
export interface TransferInternalParams {
  tokenId: string;
  from: string;
  to: string;
  amount: string;
  idempotencyKey: string;
}
