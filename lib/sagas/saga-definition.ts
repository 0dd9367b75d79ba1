import { resultsOf, stepKey, type SagaDoc } from "./saga-log";

/**
 * What a saga is made of (lib/sagas/saga-engine.ts drives them): named steps, each an action
 * call with its compensation, and the `call` the engine makes them through. A new saga
 * (lib/sagas/purchase-saga.ts) is one SagaDefinition, like lib/sagas/launch-saga.ts.
 */

export interface SagaCallOptions {
  /** Derived from the saga id and the step name: the callee keeps it. */
  idempotencyKey: string;
  /** The saga's id, e.g. as the request id of the call, so its logs tell whose step it was. */
  sagaId: string;
  meta?: Record<string, unknown>;
}

/** Calls an action (the service builds it on its broker). */
export type SagaCall = (
  action: string,
  params: Record<string, unknown>,
  opts: SagaCallOptions,
) => Promise<unknown>;

/** What a step's params are made of. */
export interface StepInput<I> {
  sagaId: string;
  userId: string;
  input: I;
  /** Results of the steps done so far, by step name. */
  results: Record<string, unknown>;
  /** This call's idempotency key. */
  key: string;
}

export interface SagaStep<I> {
  name: string;
  action: string;
  params(s: StepInput<I>): Record<string, unknown>;
  /** True: nothing to do for this saga (e.g. a royalty of 0); the step is done with a null result. */
  skip?(s: StepInput<I>): boolean;
  /**
   * Past the point of no return (e.g. a sale's payouts once the NFT has moved): a failure
   * never undoes the saga; the step is called again, with backoff, until it succeeds.
   */
  forwardOnly?: boolean;
  /**
   * An unknown outcome (retries used up, a 5xx) is learnt rather than undone: the step is
   * called again by its key, with backoff, until it answers (it did its work: the saga goes
   * on) or refuses (it did nothing: the steps before it are undone). For a step whose repeat
   * tells the truth and whose refusal is final (a bid refused stays refused), where undoing
   * a step that did its work would be wrong (a bid that is in holds its escrow).
   */
  untilKnown?: boolean;
  /** Meta of the call and of its compensation (e.g. the user it acts for). */
  meta?(s: StepInput<I>): Record<string, unknown>;
  compensate?: {
    action: string;
    /** `result` is undefined when the step's outcome is unknown; null: nothing to undo. */
    params(s: StepInput<I>, result: unknown): Record<string, unknown> | null;
    /** The params need the step's result: an unknown outcome is learnt by replaying the step. */
    needsResult?: boolean;
  };
}

export interface SagaDefinition<I> {
  type: string;
  steps: Array<SagaStep<I>>;
  /** The saga's result from its steps' results. */
  result?(results: Record<string, unknown>): unknown;
}

/**
 * What step `step` of the saga (or, `undo`, its compensation) is handed, by the log as it is.
 * `fresh`: the call is one that a callee refused before (a compensation, or a forward-only
 * step): it takes a key of its own per refusal, since the callee answers a key it has seen
 * with its first answer, and a refusal replayed for ever could never succeed.
 */
export function stepInput(
  doc: SagaDoc,
  step: string,
  undo: boolean,
  fresh = undo,
): StepInput<unknown> {
  const refusals = fresh ? (doc.steps.find(s => s.name === step)?.refusals ?? 0) : 0;
  const key = stepKey(doc._id, step, undo);
  return {
    sagaId: doc._id,
    userId: doc.userId,
    input: doc.input,
    results: resultsOf(doc),
    key: refusals > 0 ? `${key}:r${refusals}` : key,
  };
}

/** Whether `step` has nothing to do for this saga, by the results in its log so far. */
export const isSkipped = (step: SagaStep<unknown>, doc: SagaDoc): boolean =>
  step.skip?.(stepInput(doc, step.name, false)) ?? false;
