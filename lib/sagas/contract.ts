import type { PurchaseInput } from "./purchase-saga";
import type { AcceptOfferInput, CloseOfferInput, MakeOfferInput } from "./offer-sagas";

/**
 * What other services send to the sagas' internal actions (docs/architecture.md rule 6):
 * the market starts a purchase with sagas.purchase.
 */
export interface PurchaseParams {
  input: PurchaseInput;
  /** The buyer's request key (market's callerKey): a retry finds the same purchase. */
  key: string;
}

/** sagas.offer / offerAccept / offerClose: an offer's saga (lib/sagas/offer-sagas.ts). */
export interface OfferSagaParams<I = MakeOfferInput | AcceptOfferInput | CloseOfferInput> {
  input: I;
  key: string;
}
