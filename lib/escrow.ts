/**
 * The market's escrow: the account of the tokens ledger where a buyer's money waits while a
 * purchase is in flight (later: offers and bids). Like a pool's account it is no user's:
 * readable as any account (its balance, its place among the holders), but only the
 * services that run sales may move tokens to or from it (mixins/accounts.mixin.ts), so a
 * seller can never take a buyer's money before the NFT has moved.
 */
export const ESCROW_ACCOUNT = "escrow_market";

export const isEscrowAccount = (account: string): boolean => account === ESCROW_ACCOUNT;
