import { Errors, type Context, type Middleware, type Service, type ServiceBroker } from "moleculer";
import { envBool, envStr } from "../lib/shared/env";
import {
  decideFault,
  describeFaults,
  parseFaults,
  type AbortFault,
  type FaultRule,
} from "../lib/shared/faults";

/**
 * Fault injection, like a service mesh's sidecar: it delays or fails a share of the calls
 * to chosen actions on the node that hosts them (a `localAction` wrapper), so every caller
 * (gateway, other services, their retries and breakers) sees the fault as a real one.
 * Rules come from the FAULTS env; the format is documented in lib/shared/faults.ts, e.g.
 *   FAULTS="catalog.list:delay=200ms:pct=50;users.get:abort=503"
 *
 * With FAULTS_CONTROL=true the node also hosts `$faults.set({ spec })` and `$faults.get()`
 * (the rules and how many calls each action had faulted), so a test or a demo can change the
 * faults of a running node, as applying a new mesh rule would. It is off by default: nobody in a production cluster should be able to break a node.
 *
 * Wire it LAST in the broker's `middlewares` list: user middlewares wrap the handler
 * innermost-first, so the fault then sits inside the validator, bulkhead, timeout and
 * circuit breaker of its own node, and a service's error hooks see it like a handler error.
 */

export class InjectedFaultError extends Errors.MoleculerError {
  constructor(action: string, fault: AbortFault, nodeID: string) {
    // 5xx are server faults; a 4xx abort acts as the client error it names.
    const type = fault.code === 503 ? "SERVICE_UNAVAILABLE" : "FAULT_INJECTED";
    super(`Injected fault: ${action} aborted with ${fault.code}`, fault.code, type, {
      action,
      nodeID,
    });
    this.retryable = fault.retryable;
  }
}

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

export interface FaultInjectionOptions {
  /** The rules, in the FAULTS format (default: the FAULTS env). */
  spec?: string;
  /** Host `$faults.set`/`$faults.get` on this node (default: the FAULTS_CONTROL env). */
  control?: boolean;
}

export function FaultInjectionMiddleware(opts: FaultInjectionOptions = {}): Middleware {
  // Parsed once at load: a bad FAULTS stops the node at start, not at the first call.
  let rules: FaultRule[] = parseFaults(opts.spec ?? envStr("FAULTS"));
  const control = opts.control ?? envBool("FAULTS_CONTROL", false);
  /** Calls delayed or aborted, per action: lets a test see whether calls still arrive. */
  const hits: Record<string, number> = {};

  return {
    name: "FaultInjection",

    created(this: ServiceBroker, broker: ServiceBroker) {
      const logger = broker.getLogger("fault-injection");
      if (rules.length) logger.warn(`Fault injection is ON: ${describeFaults(rules)}`);
      if (!control) return;
      broker.createService({
        name: "$faults",
        actions: {
          set: {
            visibility: "public",
            params: { spec: { type: "string", max: 2000 } },
            handler(ctx: Context<{ spec: string }>) {
              rules = parseFaults(ctx.params.spec);
              logger.warn(`Fault injection changed: ${describeFaults(rules) || "none"}`);
              return { rules: rules.length };
            },
          },
          get: {
            visibility: "public",
            handler() {
              return { faults: describeFaults(rules), hits };
            },
          },
        },
      });
    },

    localAction(next, action) {
      const name = action.name ?? "";
      // The control actions must keep working while everything else is broken.
      if (name.startsWith("$")) return next;
      return function faultInjection(this: Service, ctx: Context) {
        if (rules.length === 0) return next.call(this, ctx);
        const { delayMs, abort } = decideFault(rules, name);
        if (delayMs === 0 && !abort) return next.call(this, ctx);
        hits[name] = (hits[name] ?? 0) + 1;
        return (async () => {
          if (delayMs > 0) await sleep(delayMs);
          if (abort) throw new InjectedFaultError(name, abort, ctx.broker.nodeID);
          return next.call(this, ctx);
        })();
      };
    },

    /** Rules named "@<event>": a delay holds the event back, an abort drops it on this node. */
    localEvent(next, event) {
      const name = `@${event.name ?? ""}`;
      if (name.startsWith("@$")) return next;
      return function faultInjection(this: Service, ctx: Context) {
        if (rules.length === 0) return next.call(this, ctx);
        const { delayMs, abort } = decideFault(rules, name);
        if (delayMs === 0 && !abort) return next.call(this, ctx);
        hits[name] = (hits[name] ?? 0) + 1;
        return (async () => {
          if (delayMs > 0) await sleep(delayMs);
          if (!abort) return next.call(this, ctx);
        })();
      };
    },
  };
}
