import { newId } from "../shared/ids";
import type { CollectionSpec, Doc } from "../store/store";

/**
 * The saga log: what lib/sagas/saga-engine.ts persists of every saga before and after each of
 * its steps, the shape clients see of it (docs/api.md "Token launches"), and the pure rules the
 * engine goes by (which failures are retried, which leave a step's outcome unknown, how
 * long to back off). No broker, no store in here.
 */

export type SagaState = "running" | "completed" | "compensating" | "compensated" | "failed";

/**
 * pending: not called yet; running: called, its answer not recorded (a crash may leave it
 * so: the step is called again, with the same key); done; failed: its call failed for
 * good; compensating: its undo is being tried; compensated: undone; compensation-failed:
 * its undo kept failing, so the saga ended `failed`.
 */
export type StepState =
  | "pending"
  | "running"
  | "done"
  | "failed"
  | "compensating"
  | "compensated"
  | "compensation-failed";

/** What a client may see of an error: a docs/api.md error type and message, never internals. */
export interface SagaError {
  type: string;
  message: string;
}

export interface StepDoc {
  name: string;
  state: StepState;
  /** Forward calls made (each recorded before it is made). */
  attempts: number;
  /** Compensation calls made. */
  compensations: number;
  /** The step's answer once done. */
  result?: unknown;
  /** The last failure of the step or of its compensation. */
  error?: SagaError | null;
  /**
   * The step failed in a way that may have done its work anyway (a timeout, a 5xx): it is
   * undone with the others, its compensation idempotent whether or not it happened.
   */
  uncertain?: boolean;
  /**
   * Refusals (4xx) of the calls that must succeed in the end (a compensation, a forward-only
   * step): each next call takes a key of its own (lib/sagas/saga-definition.ts stepInput).
   */
  refusals?: number;
}

export interface SagaDoc extends Doc {
  _id: string;
  type: string;
  /** The user it runs for (a launch's creator): the only one who may read it. */
  userId: string;
  /** Idempotency key of the request that started it (unique): a retry finds this saga. */
  key: string;
  /** What was asked: the same key with another request is refused. */
  fingerprint: string;
  state: SagaState;
  /** What the saga was started with (its definition's input). */
  input: object;
  steps: StepDoc[];
  result?: unknown;
  /** Why it is being (or was) undone. */
  error?: (SagaError & { step: string }) | null;
  createdAt: string;
  updatedAt: string;
  /** Set while running or compensating (a sparse index): what recovery looks for. */
  active?: true;
  /** The engine driving it, and until when (ms since epoch) no other may take it over. */
  owner: string;
  leaseUntil: number;
  /** Bumped by every write: each write is a compare-and-set on it and on `owner`. */
  version: number;
}

/** The log's collection in the sagas service's database. */
export const SAGAS = "sagas";

/** The collection of the log, with the indexes the engine and the lists need. */
export const SAGA_COLLECTIONS = {
  [SAGAS]: { unique: ["key"], indexes: ["userId", "createdAt"], sparse: ["active"] },
} satisfies Record<string, CollectionSpec>;

/** A saga as docs/api.md shows it; a step shows its result once done (the launch's token, …). */
export interface Saga {
  id: string;
  type: string;
  state: SagaState;
  steps: Array<{ name: string; state: StepState; result?: unknown; error?: SagaError }>;
  result?: unknown;
  error?: SagaError & { step: string };
  createdAt: string;
  updatedAt: string;
}

export const FINAL_STATES: readonly SagaState[] = ["completed", "compensated", "failed"];

export const isFinal = (doc: Pick<SagaDoc, "state">): boolean => FINAL_STATES.includes(doc.state);

export function toSaga(doc: SagaDoc): Saga {
  return {
    id: doc._id,
    type: doc.type,
    state: doc.state,
    steps: doc.steps.map(s => ({
      name: s.name,
      state: s.state,
      ...(s.result !== undefined ? { result: s.result } : {}),
      ...(s.error ? { error: s.error } : {}),
    })),
    ...(doc.result !== undefined ? { result: doc.result } : {}),
    ...(doc.error ? { error: doc.error } : {}),
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
  };
}

/**
 * How a failed call counts:
 *  - refused: a 4xx of the callee (a business rule, a conflict, a validation): it did
 *    nothing, and calling again answers the same;
 *  - retryable: a timeout, no node, a full queue, work still in progress: try again;
 *  - broken: any other failure (a 5xx): the call may or may not have done its work.
 */
export type FailureKind = "refused" | "retryable" | "broken";

interface ErrorLike {
  retryable?: boolean;
  code?: unknown;
  type?: unknown;
  message?: unknown;
}

export function classify(err: unknown): FailureKind {
  const e = (err ?? {}) as ErrorLike;
  if (e.retryable) return "retryable";
  if (typeof e.code === "number" && e.code >= 400 && e.code < 500) return "refused";
  return "broken";
}

/** What the log keeps of a failure: a refusal as the callee said it, anything else generic. */
export function publicError(err: unknown): SagaError {
  const e = (err ?? {}) as ErrorLike;
  const kind = classify(err);
  if (kind === "refused" && typeof e.type === "string" && typeof e.message === "string")
    return { type: e.type, message: e.message };
  if (kind === "retryable")
    return { type: "SERVICE_UNAVAILABLE", message: "The step's service did not answer in time" };
  return { type: "INTERNAL_ERROR", message: "The step failed" };
}

/** The wait before try `attempt` + 1: doubling from `baseMs`, at most `maxMs`, ±20 % jitter. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  const plain = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(plain * (0.8 + Math.random() * 0.4));
}

/** The idempotency key of a step's call (`undo`: of its compensation): saga id and step name. */
export const stepKey = (sagaId: string, step: string, undo = false): string =>
  `${sagaId}:${step}${undo ? ":undo" : ""}`;

/** Results of the steps done so far, by step name. */
export function resultsOf(doc: SagaDoc): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of doc.steps) if (s.result !== undefined) out[s.name] = s.result;
  return out;
}

/** The steps with step `i` changed: the log is written whole (one document, one write). */
export function withStep(steps: StepDoc[], i: number, change: Partial<StepDoc>): StepDoc[] {
  return steps.map((s, j) => (j === i ? { ...s, ...change } : s));
}

/** A saga's log as it starts: every step pending, owned by the engine that starts it. */
export function newSagaDoc(
  def: { type: string; steps: Array<{ name: string }> },
  what: Pick<SagaDoc, "userId" | "key" | "fingerprint" | "input">,
  engine: { owner: string; leaseMs: number },
): SagaDoc {
  const now = new Date().toISOString();
  return {
    _id: newId("sag"),
    type: def.type,
    ...what,
    state: "running",
    steps: def.steps.map(s => ({ name: s.name, state: "pending", attempts: 0, compensations: 0 })),
    error: null,
    createdAt: now,
    updatedAt: now,
    active: true,
    owner: engine.owner,
    leaseUntil: Date.now() + engine.leaseMs,
    version: 1,
  };
}

/** What the operator page (/ops) shows of a saga: its state and what failed, no input or results. */
export interface SagaSummary {
  id: string;
  type: string;
  state: SagaState;
  createdAt: string;
  updatedAt: string;
  error?: SagaError & { step: string };
  /** Steps that failed, or whose undo failed. */
  failedSteps: Array<{ name: string; state: StepState; error?: SagaError }>;
}

export function toSagaSummary(doc: SagaDoc): SagaSummary {
  return {
    id: doc._id,
    type: doc.type,
    state: doc.state,
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
    ...(doc.error ? { error: doc.error } : {}),
    failedSteps: doc.steps
      .filter(s => s.state === "failed" || s.state === "compensation-failed")
      .map(s => ({ name: s.name, state: s.state, ...(s.error ? { error: s.error } : {}) })),
  };
}
