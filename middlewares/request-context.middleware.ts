import { AsyncLocalStorage } from "node:async_hooks";
import type {
  ActionHandler,
  CallingOptions,
  Context,
  Middleware,
  Service,
  ServiceBroker,
} from "moleculer";
import type { TraceParent } from "../lib/observability/trace-tags";
import { sagaStepScope } from "../lib/sagas/step-scope";
import { defineMiddleware } from "../mixins/define";

/**
 * Keeps the running Context in AsyncLocalStorage so every log line written while
 * handling a request carries its requestID (docs/architecture.md rule 8), without passing ctx
 * to every logger call.
 */
// Nodes run with --experimental-async-context-frame: on Node 22 the default (async_hooks)
// AsyncLocalStorage slows every promise, a fifth of the throughput under load.
const storage = new AsyncLocalStorage<Context>();

export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestID ?? undefined;
}

/** The running request's trace position, if any: captured when an event is written to the outbox. */
export function currentTraceParent(): TraceParent | undefined {
  const ctx = storage.getStore();
  if (!ctx?.requestID) return undefined;
  return {
    requestID: ctx.requestID,
    parentID: ctx.span?.id ?? ctx.id,
    ...(typeof ctx.tracing === "boolean" ? { sampled: ctx.tracing } : {}),
  };
}

/** Pino `mixin`: merged into each log line. */
export function logMixin(): Record<string, string> {
  const requestID = currentRequestId();
  return requestID ? { requestID } : {};
}

/**
 * Moleculer calls a `call` hook unbound, while its broker is being constructed, and `created`
 * right after: the wrapped calls of the broker under construction learn their broker there.
 */
type BrokerRef = { broker?: ServiceBroker };
const unbound: BrokerRef[] = [];

export const RequestContextMiddleware: Middleware = defineMiddleware({
  name: "RequestContext",
  created(broker: ServiceBroker) {
    for (const ref of unbound.splice(0)) ref.broker = broker;
  },
  localAction(next: ActionHandler<Service>) {
    return function (this: Service, ctx: Context) {
      return storage.run(ctx, () => next.call(this, ctx));
    };
  },
  localEvent(next: (ctx: Context) => Promise<unknown>) {
    return (ctx: Context) => storage.run(ctx, () => next(ctx));
  },
  /**
   * A saga step's call (lib/sagas/saga-engine.ts sets the scope) is the child of a span for the step,
   * in the saga's trace (its steps' request id is the saga id), so retries and compensations
   * show as steps and the callee's spans hang under them.
   */
  call(next: ServiceBroker["call"]) {
    const ref: BrokerRef = {};
    unbound.push(ref);
    return (action: string, params?: unknown, opts: CallingOptions = {}) => {
      const step = sagaStepScope.getStore();
      const broker = ref.broker;
      if (!step || !broker?.isTracingEnabled() || opts.parentCtx || opts.parentSpan) {
        return next(action, params, opts);
      }
      const requestID = opts.requestID ?? step.sagaId;
      const span = broker.tracer.startSpan(`saga ${step.undo ? "undo" : "step"} '${step.step}'`, {
        type: "saga",
        traceID: requestID,
        service: opts.caller ?? undefined,
        tags: {
          sagaId: step.sagaId,
          step: step.step,
          undo: step.undo,
          action,
          nodeID: broker.nodeID,
          caller: opts.caller,
          requestID,
        },
      });
      // Calls the callee makes are its own, not this step's.
      return sagaStepScope
        .exit(() => next(action, params, { ...opts, parentSpan: span }))
        .then(
          (res: unknown) => {
            span.finish();
            return res;
          },
          (err: Error) => {
            span.setError(err);
            span.finish();
            throw err;
          },
        );
    };
  },
  // @moleculer/channels' hook (with `context: true`): a channel handler's lines carry the
  // request id of the change that published the event (middlewares/channels.ts sends it along).
  localChannel(next: (ctx: Context, raw: unknown) => Promise<unknown>) {
    return (ctx: Context, raw: unknown) => storage.run(ctx, () => next(ctx, raw));
  },
  // Moleculer's typings have `call` return a promise rather than the wrapped `call`, and know
  // no `localChannel`.
});
