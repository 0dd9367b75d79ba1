import type { PurchaseInput } from "./purchase-saga";

/**
 * What other services send to the sagas' internal actions (docs/architecture.md rule 6):
 * the market starts a purchase with sagas.purchase.
 */
export interface PurchaseParams {
  input: PurchaseInput;
  /** The buyer's request key (market's callerKey): a retry finds the same purchase. */
  key: string;
}
