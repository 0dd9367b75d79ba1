import type { SagaDefinition } from "./saga-definition";
import type { StepCalls } from "./saga-calls";
import type { Lease, Naps } from "./saga-lease";
import { backoffMs, classify, publicError, withStep } from "./saga-log";

/** The engine is stopping: the saga stops at its next write and lets go of its lease. */
export class Stopping extends Error {}

type SagaLogger = Record<"info" | "warn" | "error", (obj: object, msg: string) => void>;
type AnyDefinition = SagaDefinition<unknown>;

/**
 * The backward half of the saga engine (lib/sagas/saga-engine.ts): the steps that did (or
 * may have done) their work undone last first, each compensation retried with backoff up to
 * `compensationAttempts` times, a refused one asked again under a key of its own.
 */
export class Undoing {
  constructor(
    private readonly calls: StepCalls,
    private readonly logger: SagaLogger,
    private readonly opts: {
      compensationAttempts: number;
      backoffMs: number;
      maxBackoffMs: number;
    },
    private readonly naps: Naps,
    private readonly isStopping: () => boolean,
  ) {}

  /** Undoes the steps that did (or may have done) their work, last first. */
  async backward(lease: Lease, def: AnyDefinition): Promise<void> {
    for (let i = def.steps.length - 1; i >= 0; i--) {
      const s = lease.doc.steps[i];
      const undo =
        s.state === "done" || s.state === "compensating" || (s.state === "failed" && s.uncertain);
      if (!undo) continue;
      if (!def.steps[i].compensate) continue; // nothing to undo for this step
      if (!(await this.compensateStep(lease, def, i))) return;
    }
    await lease.end("compensated");
    this.logger.info({ sagaId: lease.doc._id }, "Saga compensated");
  }

  /** True once step `i` is undone; false when its compensation gave up (the saga failed). */
  private async compensateStep(lease: Lease, def: AnyDefinition, i: number): Promise<boolean> {
    const step = def.steps[i];
    for (;;) {
      if (this.isStopping()) throw new Stopping();
      const n = lease.doc.steps[i].compensations + 1;
      await lease.save({
        steps: withStep(lease.doc.steps, i, { state: "compensating", compensations: n }),
      });
      let learnt: unknown;
      try {
        learnt = await this.calls.undo(lease.doc, step, i);
      } catch (err) {
        const error = publicError(err);
        // A refusal is not asked again by the same key: the callee would only replay it.
        const refusals = (lease.doc.steps[i].refusals ?? 0) + (classify(err) === "refused" ? 1 : 0);
        if (n >= this.opts.compensationAttempts) {
          await lease.end("failed", undefined, {
            steps: withStep(lease.doc.steps, i, {
              state: "compensation-failed",
              error,
              refusals,
            }),
          });
          this.logger.error(
            { sagaId: lease.doc._id, step: step.name, compensations: n, err },
            "Saga failed: a compensation kept failing; it needs a person",
          );
          return false;
        }
        this.logger.warn(
          { sagaId: lease.doc._id, step: step.name, n, err },
          "Compensation retried",
        );
        await lease.save({ steps: withStep(lease.doc.steps, i, { error, refusals }) });
        await this.naps.sleep(backoffMs(n, this.opts.backoffMs, this.opts.maxBackoffMs));
        continue;
      }
      const change = { state: "compensated" as const, error: null };
      await lease.save({
        steps: withStep(
          lease.doc.steps,
          i,
          learnt === undefined ? change : { ...change, result: learnt },
        ),
      });
      return true;
    }
  }
}
