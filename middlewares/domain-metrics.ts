import type { ServiceBroker } from "moleculer";
import { envInt } from "../lib/shared/env";
import type { Token } from "../lib/events/domain";
import { DomainMetrics } from "../lib/observability/domain-metrics";

/**
 * The broker's DomainMetrics (lib/observability/domain-metrics.ts), one per broker: the
 * engine counts, this side hands it the broker's registry and asks tokens for decimals.
 */
const perBroker = new WeakMap<ServiceBroker, DomainMetrics>();

/** The broker's DomainMetrics (made, and its metrics registered, on first use). */
export function domainMetrics(broker: ServiceBroker): DomainMetrics {
  let m = perBroker.get(broker);
  if (!m) {
    m = new DomainMetrics(
      broker.metrics,
      {
        maxTokenLabels: envInt("METRICS_MAX_TOKEN_LABELS", 200),
        decimalsOf: async id =>
          (await broker.call<Token, { id: string }>("tokens.get", { id })).decimals,
      },
      broker.getLogger("metrics"),
    );
    perBroker.set(broker, m);
  }
  return m;
}
