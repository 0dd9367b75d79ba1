import { AsyncLocalStorage } from "node:async_hooks";

/** The saga step whose call is being made (lib/sagas/saga-engine.ts), for its span. */
export interface SagaStepTrace {
  sagaId: string;
  step: string;
  /** The step's compensation rather than the step. */
  undo: boolean;
}

/**
 * Set by the saga engine around a step's call, read by the broker's `call` hook, which makes
 * the call the child of a "saga step" span: the engine has no broker to start spans with.
 */
export const sagaStepScope = new AsyncLocalStorage<SagaStepTrace>();
