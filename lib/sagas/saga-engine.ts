import { conflict } from "../shared/errors";
import { SAGA_EVENTS, domainEvent, type SagaEnded } from "../events/domain";
import type { OutboxWriter } from "../messaging/outbox";
import { isSkipped } from "./saga-definition";
import type { SagaCall, SagaDefinition } from "./saga-definition";
import { StepCalls } from "./saga-calls";
import { Stopping, Undoing } from "./saga-undo";
import { Lease, Naps, SagaTakenOver, type LeaseOptions } from "./saga-lease";
import {
  backoffMs,
  classify,
  isFinal,
  newSagaDoc,
  publicError,
  resultsOf,
  SAGAS,
  withStep,
  type SagaDoc,
  type SagaError,
  type StepDoc,
} from "./saga-log";
import {
  insertIfAbsent,
  pruneOlderThan,
  type Database,
  type Store,
  type TxStores,
} from "../store/store";

/**
 * The saga engine: long-running changes across services as a list of named steps, each
 * an action call with its compensation, driven to `completed`, or undone in reverse
 * order to `compensated`, whatever crashes on the way. The launch saga
 * (lib/sagas/launch-saga.ts) is one definition; the NFT purchase (lib/sagas/purchase-saga.ts) another.
 *
 *  - The log (lib/sagas/saga-log.ts) is written before and after every call: a step is marked
 *    `running` (with its attempt count) before it is called and `done` with its result
 *    after, so whoever drives the saga next calls again exactly the step whose answer
 *    was not recorded. The first `running` goes in with the saga, a step's `done` and the
 *    next step's `running` in one write, and the last step's `done` with the saga's end.
 *  - Every call carries an idempotency key of the saga id and the step name (its undo one
 *    of its own), so calling again after a crash is harmless.
 *  - A retryable failure (timeout, no node) is retried with backoff, `stepAttempts` times
 *    in all. A refusal (4xx) fails the step for good: its finished predecessors are
 *    undone, last first. A failure that may have done the work (a 5xx, retries used up)
 *    fails it too, and it is undone with them: compensations must be harmless when their
 *    step did nothing. A compensation that needs the step's result it never got replays
 *    the step (same key) to learn it.
 *  - A compensation is retried with backoff until it succeeds, `compensationAttempts`
 *    times at most; then the saga ends `failed`, logged at error level with its id. A
 *    refused compensation is asked again under a key of its own, not replayed.
 *  - A `forwardOnly` step (past the point of no return) is never undone: it is retried
 *    with backoff until it succeeds. An `untilKnown` step whose outcome is unknown is
 *    called again by its key until it answers (forward) or refuses (undone as a refusal).
 *  - Leases: a saga is driven by one engine at a time, its `owner`. Every write is a
 *    compare-and-set on `owner` and `version` that extends `leaseUntil`, and a timer
 *    renews the lease while a call is out, so another engine (a replica on the same
 *    MongoDB, or this process after a restart) takes a saga over only once its lease
 *    expired, by a compare-and-set of its own; the old owner's next write then fails and
 *    it stops. `recover()` does that, at start and periodically.
 *  - The end and its `sagas.<state>` event in the outbox are one transaction of the
 *    sagas database: an ended saga always has its event, and a crash leaves neither.
 *
 * No broker in here: the service hands it its database, its outbox and `call`
 * (lib/sagas/saga-definition.ts); the lease is lib/sagas/saga-lease.ts.
 */

type SagaLogger = Record<"info" | "warn" | "error", (obj: object, msg: string) => void>;

/** `owner`: unique per process (node id + instance). */
export interface SagaEngineOptions extends LeaseOptions {
  /** Calls of a step whose failures are retryable, before the saga gives up on it. */
  stepAttempts: number;
  /** Calls of a compensation before the saga ends `failed`. */
  compensationAttempts: number;
  /** The first backoff between retries, doubling up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
}

/** A step that succeeded: whether its record is written, and with the next step's mark. */
interface StepDone {
  done: true;
  written: boolean;
  markedNext: boolean;
  change: Partial<StepDoc>;
}

/** Definitions of any input: each is only ever handed the input its own sagas started with. */
type AnyDefinition = SagaDefinition<unknown>;

export class SagaEngine {
  private readonly definitions = new Map<string, AnyDefinition>();
  /** Sagas this engine drives now, by id. */
  private readonly running = new Map<string, Promise<void>>();
  private stopping = false;
  /** Backoffs and polls, cut short by stop(). */
  private readonly naps = new Naps();
  private readonly calls: StepCalls;
  private readonly undoing: Undoing;

  private readonly store: Store<SagaDoc>;
  /** Logs written before the end was a transaction may hold ends whose event is not out. */
  private legacyChecked = false;

  constructor(
    private readonly db: Database,
    private readonly outbox: OutboxWriter,
    call: SagaCall,
    private readonly logger: SagaLogger,
    private readonly opts: SagaEngineOptions,
  ) {
    this.store = db.store<SagaDoc>(SAGAS);
    this.calls = new StepCalls(call);
    this.undoing = new Undoing(this.calls, logger, opts, this.naps, () => this.stopping);
  }

  define<I>(def: SagaDefinition<I>): void {
    this.definitions.set(def.type, def);
  }

  /**
   * Starts a saga once per key (a retry of the key answers the first saga) and drives it
   * in the background; `wait()` tells when it ends.
   */
  async start<I extends object>(
    type: string,
    userId: string,
    key: string,
    fingerprint: string,
    input: I,
  ): Promise<SagaDoc> {
    const def = this.definitions.get(type);
    if (!def) throw new Error(`Unknown saga type ${type}`);
    let doc = newSagaDoc(def, { userId, key, fingerprint, input }, this.opts);
    // The first step's `running` mark goes in with the saga, unless it is to be skipped.
    const first = def.steps[0];
    const marked = first !== undefined && !isSkipped(first, doc);
    if (marked) doc = { ...doc, steps: withStep(doc.steps, 0, { state: "running", attempts: 1 }) };
    if (await insertIfAbsent(this.store, doc)) {
      this.logger.info({ sagaId: doc._id, type }, "Saga started");
      this.launch(doc, marked ? 0 : -1);
      return doc;
    }
    const earlier = await this.store.findOne({ key });
    if (!earlier) return this.start(type, userId, key, fingerprint, input); // pruned meanwhile
    if (earlier.fingerprint !== fingerprint || earlier.userId !== userId)
      throw conflict("Idempotency key was already used for another request");
    return earlier;
  }

  find(id: string): Promise<SagaDoc | null> {
    return this.store.findOne({ _id: id });
  }

  /** The saga once it has ended, or as it is after `ms`. */
  async wait(id: string, ms: number): Promise<SagaDoc | null> {
    const until = Date.now() + ms;
    const local = this.running.get(id);
    if (local) await Promise.race([local, this.naps.sleep(ms)]);
    for (;;) {
      const doc = await this.find(id);
      if (!doc || isFinal(doc) || Date.now() >= until) return doc;
      // Driven by another node: look again shortly.
      await this.naps.sleep(Math.min(100, until - Date.now()));
    }
  }

  /**
   * Takes over the sagas left running or compensating whose lease expired (their node
   * died or stalled), and drives each to its end; re-writes the events of ended sagas a
   * crash kept back. `all`: every saga not driven here, whatever its lease (a start on
   * SQLite file, whose lock proves no other process drives any). Returns how many it took.
   */
  async recover(all = false): Promise<number> {
    if (this.stopping) return 0;
    if (!this.legacyChecked) await this.publishLegacyEnds();
    const now = Date.now();
    let taken = 0;
    for (const doc of await this.store.find({ active: true })) {
      if (this.running.has(doc._id) || (!all && doc.leaseUntil > now)) continue;
      if (all && doc.owner === this.opts.owner) continue; // started here since: driven here
      const claimed = await this.store.updateOne(
        { _id: doc._id, version: doc.version, active: true },
        {
          $set: {
            owner: this.opts.owner,
            leaseUntil: Date.now() + this.opts.leaseMs,
            version: doc.version + 1,
          },
        },
      );
      if (!claimed) continue; // another engine was first
      this.logger.info(
        { sagaId: doc._id, state: doc.state, from: doc.owner },
        "Saga resumed: its lease had expired, or its node restarted",
      );
      this.launch(claimed);
      taken++;
    }
    return taken;
  }

  /** Removes ended sagas created before `before`, oldest first. Returns how many. */
  prune(before: Date): Promise<number> {
    return pruneOlderThan(this.store, "createdAt", before.getTime(), {
      iso: true,
      where: { active: { $exists: false }, unpublished: { $exists: false } },
    });
  }

  /** Stops driving: each saga stops at its next write and its lease is let go for others. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.naps.wakeAll();
    await Promise.allSettled([...this.running.values()]);
  }

  get stopped(): boolean {
    return this.stopping;
  }

  /** Resolves once the sagas driven now have ended or stopped (tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  /** `marked`: the step whose first `running` mark is in `doc` as this engine wrote it (-1: none). */
  private launch(doc: SagaDoc, marked = -1): void {
    const done = this.drive(doc, marked).finally(() => this.running.delete(doc._id));
    this.running.set(doc._id, done);
  }

  private async drive(doc: SagaDoc, marked = -1): Promise<void> {
    const def = this.definitions.get(doc.type);
    if (!def) {
      this.logger.error({ sagaId: doc._id, type: doc.type }, "Saga of an unknown type left alone");
      return;
    }
    const lease = new Lease(this.db, doc, this.opts, (tx, ended) => this.writeEvent(tx, ended));
    try {
      if (lease.doc.state === "running") await this.forward(lease, def, marked);
      if (lease.doc.state === "compensating") await this.undoing.backward(lease, def);
    } catch (err) {
      if (err instanceof SagaTakenOver) {
        this.logger.warn({ sagaId: doc._id }, "Saga taken over by another node; this one stops");
      } else if (err instanceof Stopping) {
        await lease.release();
      } else {
        // Left with its lease: recovery takes it up again once the lease runs out.
        this.logger.warn({ sagaId: doc._id, err }, "Saga interrupted; recovery will resume it");
      }
    } finally {
      lease.close();
    }
  }

  /** `marked`: the step whose first `running` mark this engine wrote before (-1: none). */
  private async forward(lease: Lease, def: AnyDefinition, marked: number): Promise<void> {
    for (let i = 0; i < def.steps.length; i++) {
      if (lease.doc.steps[i].state === "done") continue;
      const outcome = await this.runStep(lease, def, i, marked === i);
      if (outcome.done) {
        // This engine wrote the next step's first `running` mark with this step's `done`.
        if (outcome.markedNext) marked = i + 1;
        if (outcome.written) continue;
        // The last step: its result goes in the same write as the saga's end.
        const steps = withStep(lease.doc.steps, i, outcome.change);
        const results = resultsOf({ ...lease.doc, steps });
        await lease.end("completed", def.result ? def.result(results) : results, { steps });
        this.logger.info({ sagaId: lease.doc._id }, "Saga completed");
        return;
      }
      const step = def.steps[i].name;
      const failure = outcome.failure;
      this.logger.info({ sagaId: lease.doc._id, step, error: failure.error }, "Saga step failed");
      await lease.save({
        state: "compensating",
        error: { step, ...failure.error },
        steps: withStep(lease.doc.steps, i, {
          state: "failed",
          error: failure.error,
          uncertain: failure.uncertain,
        }),
      });
      return;
    }
    const results = resultsOf(lease.doc);
    await lease.end("completed", def.result ? def.result(results) : results);
    this.logger.info({ sagaId: lease.doc._id }, "Saga completed");
  }

  /**
   * Calls step `i` until it is done or fails for good; `marked`: its first `running` mark is
   * written already. A done step's record goes in one write with the next step's `running`
   * mark (the log is written before and after every call, and after one call comes the
   * next), so a saga of n steps writes n times after its insert, not 2n + 1. The last step's
   * record is left to the caller (`written: false`), for the saga's end.
   */
  private async runStep(
    lease: Lease,
    def: AnyDefinition,
    i: number,
    marked: boolean,
  ): Promise<StepDone | { done: false; failure: { error: SagaError; uncertain: boolean } }> {
    const step = def.steps[i];
    if (isSkipped(step, lease.doc)) {
      // A null result: its compensation has nothing to undo either.
      return this.stepDone(lease, def, i, { state: "done", result: null });
    }
    for (;;) {
      if (this.stopping) throw new Stopping();
      const attempts = marked ? lease.doc.steps[i].attempts : lease.doc.steps[i].attempts + 1;
      if (!marked)
        await lease.save({ steps: withStep(lease.doc.steps, i, { state: "running", attempts }) });
      marked = false;
      let result: unknown;
      try {
        result = await this.calls.step(lease.doc, step);
      } catch (err) {
        const kind = classify(err);
        if (step.forwardOnly) {
          await this.retryForward(lease, i, attempts, err);
          continue;
        }
        if (kind === "retryable" && attempts < this.opts.stepAttempts) {
          this.logger.warn(
            { sagaId: lease.doc._id, step: step.name, attempts, err },
            "Step retried",
          );
          await lease.save({ steps: withStep(lease.doc.steps, i, { error: publicError(err) }) });
          await this.naps.sleep(backoffMs(attempts, this.opts.backoffMs, this.opts.maxBackoffMs));
          continue;
        }
        if (kind !== "refused" && step.untilKnown) {
          // Its outcome is unknown: asked again (same key) until it answers or refuses.
          await this.retryForward(
            lease,
            i,
            attempts,
            err,
            "Step asked again: its outcome is unknown",
          );
          continue;
        }
        if (kind !== "refused") this.logger.warn({ sagaId: lease.doc._id, err }, "Step broke");
        return { done: false, failure: { error: publicError(err), uncertain: kind !== "refused" } };
      }
      // Outside the call's try: a log that cannot be written is no failure of the step.
      return this.stepDone(lease, def, i, { state: "done", result, error: null });
    }
  }

  /**
   * A forward-only step failed (or an `untilKnown` one without an answer): it is not undone,
   * so it is called again after a backoff, however often; a refusal gives the next call a
   * key of its own (a refusal replayed by its key could never succeed), anything else keeps
   * the key (it may have done the work).
   */
  private async retryForward(
    lease: Lease,
    i: number,
    attempts: number,
    err: unknown,
    msg = "Forward-only step retried: the saga cannot be undone past it",
  ) {
    const s = lease.doc.steps[i];
    const refused = classify(err) === "refused";
    const level = refused || attempts >= this.opts.stepAttempts ? "error" : "warn";
    this.logger[level]({ sagaId: lease.doc._id, step: s.name, attempts, err }, msg);
    const refusals = (s.refusals ?? 0) + (refused ? 1 : 0);
    await lease.save({
      steps: withStep(lease.doc.steps, i, { error: publicError(err), refusals }),
    });
    await this.naps.sleep(backoffMs(attempts, this.opts.backoffMs, this.opts.maxBackoffMs));
  }

  /**
   * Records step `i` done, with the next step's first `running` mark in the same write when
   * there is one to call; the last step's record is the caller's, to go with the saga's end.
   */
  private async stepDone(
    lease: Lease,
    def: AnyDefinition,
    i: number,
    change: Partial<StepDoc>,
  ): Promise<StepDone> {
    const j = i + 1;
    if (j >= def.steps.length) return { done: true, written: false, markedNext: false, change };
    let steps = withStep(lease.doc.steps, i, change);
    const markedNext =
      steps[j].state !== "done" && !isSkipped(def.steps[j], { ...lease.doc, steps });
    if (markedNext)
      steps = withStep(steps, j, { state: "running", attempts: steps[j].attempts + 1 });
    await lease.save({ steps });
    return { done: true, written: true, markedNext, change };
  }

  /** The saga's end event into the outbox, inside the transaction that ends it. */
  private writeEvent(tx: TxStores, doc: SagaDoc): Promise<() => void> {
    const state = doc.state as SagaEnded["state"];
    const data: SagaEnded = { sagaId: doc._id, sagaType: doc.type, userId: doc.userId, state };
    return this.outbox.writeIn(tx, [domainEvent(SAGA_EVENTS[state], doc._id, data)]);
  }

  /**
   * Ends an older version wrote with an `unpublished` flag, its event not yet in the
   * outbox (a crash between its two writes): event and flag's removal in one transaction.
   */
  private async publishLegacyEnds(): Promise<void> {
    for (const doc of await this.store.find({ unpublished: true })) {
      if (!isFinal(doc)) continue;
      const send = await this.db.transaction(async tx => {
        await tx.store(SAGAS).update({ _id: doc._id }, { $unset: { unpublished: true } });
        return this.writeEvent(tx, doc);
      });
      send();
    }
    this.legacyChecked = true;
  }
}
