import { stepInput, type SagaCall, type SagaStep, type StepInput } from "./saga-definition";
import { classify, type SagaDoc } from "./saga-log";
import { sagaStepScope } from "./step-scope";

type AnyStep = SagaStep<unknown>;

/**
 * The calls the saga engine (lib/sagas/saga-engine.ts) makes for a step and for its undo, each
 * with the step's idempotency key (lib/sagas/saga-definition.ts stepInput) and traced as the step.
 */
export class StepCalls {
  constructor(private readonly call: SagaCall) {}

  /** The step's own call: a repeat with its key answers its first outcome. */
  step(doc: SagaDoc, step: AnyStep): Promise<unknown> {
    // A forward-only step asked again after a refusal takes a key of its own.
    const input = stepInput(doc, step.name, false, step.forwardOnly === true);
    return this.invoke(step.action, step.params(input), input, step);
  }

  /** Calls step `i`'s compensation; returns the step's result when it had to learn it. */
  async undo(doc: SagaDoc, step: AnyStep, i: number): Promise<unknown> {
    const comp = step.compensate!;
    let result = doc.steps[i].result;
    let learnt: unknown;
    if (result === undefined && comp.needsResult) {
      // Its outcome is unknown: the same call again (same key) tells it, doing it if need be.
      try {
        result = learnt = await this.step(doc, step);
      } catch (err) {
        if (classify(err) !== "refused") throw err;
        return undefined; // refused now: it never did its work, nothing to undo
      }
    }
    const input = stepInput(doc, step.name, true);
    const params = comp.params(input, result);
    if (params) await this.invoke(comp.action, params, input, step);
    return learnt;
  }

  private invoke(
    action: string,
    params: Record<string, unknown>,
    input: StepInput<unknown>,
    step: AnyStep,
  ): Promise<unknown> {
    const opts = { idempotencyKey: input.key, sagaId: input.sagaId, meta: step.meta?.(input) };
    // The call is traced as this saga step (middlewares/request-context.middleware.ts).
    const scope = { sagaId: input.sagaId, step: step.name, undo: action !== step.action };
    return sagaStepScope.run(scope, () => this.call(action, params, opts));
  }
}
