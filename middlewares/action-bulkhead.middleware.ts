import {
  METRIC,
  MetricReporters,
  type BrokerOptions,
  type Middleware,
  type ServiceSchema,
} from "moleculer";
import { METRICS, registerDomainMetrics } from "../lib/observability/domain-metrics";

/**
 * A bulkhead on every action, not on event handlers. The broker's own `bulkhead`
 * option wraps both, and with the in-memory channels adapter a full queue would drop a
 * domain event for good; event consumers are bounded by their channel's maxInFlight
 * instead. An action's own `bulkhead` settings win (e.g. `api.rest` turns it off).
 */
export function ActionBulkheadMiddleware(defaults: {
  concurrency: number;
  maxQueueSize: number;
}): Middleware {
  return {
    name: "ActionBulkhead",
    serviceCreating(_service, schema: ServiceSchema) {
      const actions = schema.actions ?? {};
      for (const [name, def] of Object.entries(actions)) {
        if (def === false || def === true || def == null) continue;
        if (typeof def === "function") {
          actions[name] = { handler: def, bulkhead: { enabled: true, ...defaults } };
        } else {
          def.bulkhead = { enabled: true, ...defaults, ...def.bulkhead };
        }
      }
    },
  };
}

/** Moleculer's bulkhead gauges, and the contract's names they are mirrored to. */
const MIRRORED: Record<string, string> = {
  [METRIC.MOLECULER_REQUEST_BULKHEAD_INFLIGHT]: METRICS.bulkheadActive,
  [METRIC.MOLECULER_REQUEST_BULKHEAD_QUEUE_SIZE]: METRICS.bulkheadQueue,
};

/**
 * Moleculer's bulkhead (which does the queueing above) keeps its counts to itself and
 * reports them only as its own gauges. This metric reporter, which the registry tells of
 * every change, copies them to mintmesh.bulkhead.active / .queue labelled by action
 * alone (lib/observability/domain-metrics.ts), rather than a second bulkhead counting the same calls.
 */
export class BulkheadGaugesReporter extends MetricReporters.Base {
  override init(registry: Parameters<MetricReporters.Base["init"]>[0]): void {
    super.init(registry);
    registerDomainMetrics(registry);
  }

  override metricChanged(
    metric: { name: string },
    value: unknown,
    labels?: Record<string, unknown>,
  ): void {
    const mirror = MIRRORED[metric.name];
    if (!mirror || typeof value !== "number") return;
    this.registry.set(mirror, value, { action: String(labels?.action ?? "") });
  }
}

type MetricsOptions = Exclude<NonNullable<BrokerOptions["metrics"]>, boolean>;
/** One entry of the broker's `metrics.reporter` list. */
export type ReporterEntry = Extract<NonNullable<MetricsOptions["reporter"]>, unknown[]>[number];

/** A BulkheadGaugesReporter for `metrics.reporter`. */
export function bulkheadGaugesReporter(): ReporterEntry {
  // Moleculer takes a reporter instance there (Reporters.resolve); its typings list configs only.
  return new BulkheadGaugesReporter() as unknown as ReporterEntry;
}
