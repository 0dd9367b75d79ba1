import type { ServiceBroker } from "moleculer";
import {
  METRIC_INCLUDES,
  OPS_CALLER,
  type MetricInfo,
  type NodeAnswer,
  type NodeHealth,
  type RegistryNode,
} from "../lib/gateway/ops/snapshot";
import type { SagaSummary } from "../lib/sagas/saga-log";
import type { WebhookStats } from "../lib/webhooks/delivery-queue";
import type { MarketOpsStats } from "../lib/market/escrow-holdings";

/** The operator page's calls to the cluster (mixins/ops.mixin.ts); the snapshot is lib/gateway/ops/snapshot.ts. */

/**
 * One node's metrics (and, `full`, its health) within `timeoutMs`, never retried: a node
 * that does not answer in time is shown without them, and the page does not stall on it.
 */
export async function askNode(
  broker: Pick<ServiceBroker, "call">,
  n: RegistryNode,
  full: boolean,
  timeoutMs: number,
): Promise<NodeAnswer> {
  if (!n.available) return { n, health: null, metrics: null };
  const opts = { nodeID: n.id, timeout: timeoutMs, retries: 0, caller: OPS_CALLER };
  const [health, metrics] = await Promise.all([
    full
      ? broker.call<NodeHealth, Record<string, never>>("$node.health", {}, opts).catch(() => null)
      : null,
    broker
      .call<MetricInfo[], { includes: string[] }>(
        "$node.metrics",
        { includes: METRIC_INCLUDES },
        opts,
      )
      .catch(() => null),
  ]);
  return { n, health, metrics };
}

/**
 * The last `limit` sagas (with their failed steps) when the sagas service runs, within
 * `timeoutMs`, never retried; null when it does not answer.
 */
export function recentSagas(
  broker: Pick<ServiceBroker, "call" | "registry">,
  limit: number,
  timeoutMs: number,
): Promise<SagaSummary[] | null> {
  const up = broker.registry.getServiceList({ onlyAvailable: true }).some(s => s.name === "sagas");
  if (!up) return Promise.resolve(null);
  return broker
    .call<SagaSummary[], { limit: number }>(
      "sagas.recent",
      { limit },
      { timeout: timeoutMs, retries: 0, caller: OPS_CALLER },
    )
    .catch(() => null);
}

/**
 * The webhook delivery backlog and failures when the webhooks service runs, within
 * `timeoutMs`, never retried; null when it does not answer.
 */
export function webhookStats(
  broker: Pick<ServiceBroker, "call" | "registry">,
  timeoutMs: number,
): Promise<WebhookStats | null> {
  const up = broker.registry
    .getServiceList({ onlyAvailable: true })
    .some(s => s.name === "webhooks");
  if (!up) return Promise.resolve(null);
  return broker
    .call<WebhookStats, Record<string, never>>(
      "webhooks.stats",
      {},
      { timeout: timeoutMs, retries: 0, caller: OPS_CALLER },
    )
    .catch(() => null);
}

/**
 * The market's escrow (its balance beside what the market holds) and the auctions ending
 * soonest when the market service runs, within `timeoutMs`, never retried; null otherwise.
 */
export function marketStats(
  broker: Pick<ServiceBroker, "call" | "registry">,
  auctions: number,
  timeoutMs: number,
): Promise<MarketOpsStats | null> {
  const up = broker.registry.getServiceList({ onlyAvailable: true }).some(s => s.name === "market");
  if (!up) return Promise.resolve(null);
  return broker
    .call<MarketOpsStats, { auctions: number }>(
      "market.opsStats",
      { auctions },
      { timeout: timeoutMs, retries: 0, caller: OPS_CALLER },
    )
    .catch(() => null);
}
