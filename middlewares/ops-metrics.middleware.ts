import type { Middleware, ServiceBroker } from "moleculer";
import { domainMetrics } from "./domain-metrics";
import { defineMiddleware } from "../mixins/define";

/**
 * Registers the domain and operations metrics (lib/observability/domain-metrics.ts) on every node, and
 * turns this node's circuit-breaker changes into mintmesh.breaker.open and
 * mintmesh.breaker.changes.total.
 *
 * Moleculer's breaker announces each change with `broker.broadcast("$circuit-breaker.…")`,
 * which reaches every node of the cluster; wrapping `broadcast` here sees only the ones
 * this node sends, i.e. the breakers this node keeps as a caller, so each change is
 * counted once, on the node whose calls it stops.
 */

/** What Moleculer's circuit breaker broadcasts (moleculer/src/middlewares/circuit-breaker.js). */
interface BreakerPayload {
  /** The endpoint's node: the target of the calls. */
  nodeID: string;
  action: string;
}

const BREAKER_EVENTS = {
  "$circuit-breaker.opened": "open",
  "$circuit-breaker.half-opened": "half-open",
  "$circuit-breaker.closed": "closed",
} as const;

type BreakerEvent = keyof typeof BREAKER_EVENTS;
const isBreakerEvent = (name: string): name is BreakerEvent => name in BREAKER_EVENTS;

type Broadcast = (
  eventName: string,
  payload?: unknown,
  opts?: Record<string, unknown>,
) => Promise<void>;

export function OpsMetricsMiddleware(): Middleware {
  let broker: ServiceBroker | undefined;
  const middleware = {
    name: "OpsMetrics",

    created(b: ServiceBroker) {
      broker = b;
      domainMetrics(b);
    },

    broadcast(next: Broadcast): Broadcast {
      return (eventName, payload, opts) => {
        if (broker && isBreakerEvent(eventName)) {
          const p = payload as BreakerPayload;
          domainMetrics(broker).breakerChanged(p.action, p.nodeID, BREAKER_EVENTS[eventName]);
        }
        return next(eventName, payload, opts);
      };
    },
  };
  // Moleculer's typings have the `broadcast` hook return a Promise; it returns the wrapper.
  return defineMiddleware(middleware);
}
