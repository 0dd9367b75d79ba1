import type { ServiceBroker } from "moleculer";
import {
  SAGA_EVENTS,
  TOKEN_EVENTS,
  type DomainEvent,
  type EventName,
  type SagaEnded,
  type Token,
  type TokenCreated,
  type TokenTransferred,
} from "../events/domain";
import { MARKET_EVENTS, type ListingEvent } from "../events/market";
import { NFT_EVENTS } from "../events/nfts";
import { Lru } from "../shared/lru";

/**
 * The domain's own metrics and the operations metrics beside Moleculer's built-in ones
 * (docs/observability.md "Metrics"). The names are a contract: the Grafana dashboard
 * (deploy/grafana/dashboards/mintmesh.json) and the /ops page read them.
 *
 * Domain counters move at the commit point, once per change: when a write model's outbox
 * takes an event it did not hold before (lib/messaging/outbox.ts), so a retried or recovered change,
 * whose event id repeats, is never counted twice.
 */

export const METRICS = {
  tokensCreated: "mintmesh.tokens.created.total",
  transfers: "mintmesh.transfers.total",
  transfersVolume: "mintmesh.transfers.volume.total",
  nftsMinted: "mintmesh.nfts.minted.total",
  sales: "mintmesh.sales.total",
  salesVolume: "mintmesh.sales.volume.total",
  sagas: "mintmesh.sagas.total",
  breakerOpen: "mintmesh.breaker.open",
  breakerChanges: "mintmesh.breaker.changes.total",
  bulkheadActive: "mintmesh.bulkhead.active",
  bulkheadQueue: "mintmesh.bulkhead.queue",
  outboxBacklog: "mintmesh.outbox.backlog",
  readModelLag: "mintmesh.readmodel.lag",
  readModelLagLast: "mintmesh.readmodel.lag.last",
} as const;

export type MetricName = EventName<typeof METRICS>;

/** The label a token or currency id beyond the first METRICS_MAX_TOKEN_LABELS gets. */
export const OTHER_LABEL = "_other";

/** Seconds: from a few ms (caught up) to minutes (a consumer that was down). */
const LAG_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

type Registry = ServiceBroker["metrics"];

interface MetricBase {
  name: MetricName;
  description: string;
  labelNames?: string[];
  unit?: string;
}
type MetricDefinition = MetricBase &
  (
    | { type: "counter" }
    | { type: "gauge" }
    | { type: "histogram"; buckets: number[]; quantiles: number[] }
  );

const DEFINITIONS: MetricDefinition[] = [
  {
    type: "counter",
    name: METRICS.tokensCreated,
    description: "Tokens created",
  },
  {
    type: "counter",
    name: METRICS.transfers,
    labelNames: ["token"],
    description: "Token transfers written to the ledger",
  },
  {
    type: "counter",
    name: METRICS.transfersVolume,
    labelNames: ["token"],
    description: "Amount transferred, in whole token units",
  },
  { type: "counter", name: METRICS.nftsMinted, description: "NFTs minted" },
  { type: "counter", name: METRICS.sales, description: "NFT sales" },
  {
    type: "counter",
    name: METRICS.salesVolume,
    labelNames: ["currency"],
    description: "Sale prices, in whole units of the payment token",
  },
  {
    type: "counter",
    name: METRICS.sagas,
    labelNames: ["type", "outcome"],
    description: "Sagas ended, by type and outcome (completed, compensated, failed)",
  },
  {
    type: "gauge",
    name: METRICS.breakerOpen,
    labelNames: ["action", "target"],
    description: "1 while this node's circuit breaker of an action endpoint is open or half-open",
  },
  {
    type: "counter",
    name: METRICS.breakerChanges,
    labelNames: ["action", "target", "state"],
    description: "Circuit breaker state changes of this node (open, half-open, closed)",
  },
  {
    type: "gauge",
    name: METRICS.bulkheadActive,
    labelNames: ["action"],
    description: "Calls of an action running on this node",
  },
  {
    type: "gauge",
    name: METRICS.bulkheadQueue,
    labelNames: ["action"],
    description: "Calls of an action waiting in this node's bulkhead",
  },
  {
    type: "gauge",
    name: METRICS.outboxBacklog,
    labelNames: ["service"],
    description: "Outbox entries written and not yet published",
  },
  {
    type: "histogram",
    name: METRICS.readModelLag,
    labelNames: ["consumer"],
    unit: "seconds",
    buckets: LAG_BUCKETS,
    // Moleculer's Prometheus reporter writes _sum and _count only with quantiles.
    quantiles: [0.5, 0.95, 0.99],
    description: "Seconds from an event's ledger change to its read model having applied it",
  },
  {
    type: "gauge",
    name: METRICS.readModelLagLast,
    labelNames: ["consumer"],
    unit: "seconds",
    description: "Lag of the last event a read model applied",
  },
];

/** Registers every metric above once; counters without labels start at 0 (so rate() sees the first). */
export function registerDomainMetrics(metrics: Registry): void {
  if (!metrics.isEnabled()) return;
  for (const def of DEFINITIONS) {
    if (metrics.hasMetric(def.name)) continue;
    // One call per kind: Moleculer's typings overload `register` by it.
    if (def.type === "histogram") metrics.register(def);
    else if (def.type === "gauge") metrics.register(def);
    else {
      metrics.register(def);
      if (!def.labelNames) metrics.increment(def.name, {}, 0);
    }
  }
}

/**
 * The first `max` distinct ids keep their own label; later ones share OTHER_LABEL, so a
 * flood of new tokens cannot grow the metrics (and Prometheus' series) without bound.
 */
export class BoundedLabels {
  private readonly seen = new Set<string>();

  constructor(private readonly max: number) {}

  of(id: string): string {
    if (this.seen.has(id)) return id;
    if (this.seen.size >= this.max) return OTHER_LABEL;
    this.seen.add(id);
    return id;
  }
}

/** A base-unit decimal string as whole units (a float: exact enough for a rate or a sum on a chart). */
export function wholeUnits(amount: string, decimals: number): number {
  const base = BigInt(amount);
  if (decimals <= 0) return Number(base);
  const scale = 10n ** BigInt(decimals);
  return Number(base / scale) + Number(base % scale) / Number(scale);
}

export interface DomainMetricsOptions {
  /** Distinct token (and currency) labels kept before OTHER_LABEL (METRICS_MAX_TOKEN_LABELS). */
  maxTokenLabels: number;
  /** A token's decimals (they never change): asked once per token, then remembered. */
  decimalsOf(tokenId: string): Promise<number>;
}

interface WarnLogger {
  warn(obj: object, msg: string): void;
}

/** Tokens whose decimals are remembered (one number each). */
const DECIMALS_CACHE_ENTRIES = 10_000;

export class DomainMetrics {
  private readonly tokens: BoundedLabels;
  private readonly currencies: BoundedLabels;
  private readonly decimals = new Lru<string, Promise<number>>({
    maxEntries: DECIMALS_CACHE_ENTRIES,
  });

  constructor(
    private readonly metrics: Registry,
    private readonly opts: DomainMetricsOptions,
    private readonly logger: WarnLogger,
  ) {
    registerDomainMetrics(metrics);
    this.tokens = new BoundedLabels(opts.maxTokenLabels);
    this.currencies = new BoundedLabels(opts.maxTokenLabels);
  }

  /** An event the outbox took for the first time: the change it reports is committed. */
  eventWritten(event: DomainEvent): void {
    if (!this.metrics.isEnabled()) return;
    switch (event.type) {
      case TOKEN_EVENTS.created: {
        const { token } = event.data as TokenCreated;
        this.metrics.increment(METRICS.tokensCreated);
        this.rememberDecimals(token);
        return;
      }
      case TOKEN_EVENTS.transferred: {
        const t = event.data as TokenTransferred;
        const token = this.tokens.of(t.tokenId);
        this.metrics.increment(METRICS.transfers, { token });
        this.addVolume(METRICS.transfersVolume, { token }, t.tokenId, t.amount);
        return;
      }
      case NFT_EVENTS.minted:
        this.metrics.increment(METRICS.nftsMinted);
        return;
      case MARKET_EVENTS.sold: {
        const { listing } = event.data as ListingEvent;
        this.metrics.increment(METRICS.sales);
        const currency = this.currencies.of(listing.priceTokenId);
        this.addVolume(METRICS.salesVolume, { currency }, listing.priceTokenId, listing.price);
        return;
      }
      case SAGA_EVENTS.completed:
      case SAGA_EVENTS.compensated:
      case SAGA_EVENTS.failed: {
        const s = event.data as SagaEnded;
        this.metrics.increment(METRICS.sagas, { type: s.sagaType, outcome: s.state });
        return;
      }
    }
  }

  breakerChanged(action: string, target: string, state: "open" | "half-open" | "closed"): void {
    this.metrics.increment(METRICS.breakerChanges, { action, target, state });
    this.metrics.set(METRICS.breakerOpen, state === "closed" ? 0 : 1, { action, target });
  }

  outboxBacklog(service: string, unsent: number): void {
    this.metrics.set(METRICS.outboxBacklog, unsent, { service });
  }

  /** Events a read model (`consumer`) has just applied: their lag from the ledger change. */
  readModelApplied(consumer: string, events: DomainEvent[], now = Date.now()): void {
    if (!this.metrics.isEnabled() || events.length === 0) return;
    let last = 0;
    for (const e of events) {
      const at = Date.parse(e.occurredAt);
      if (Number.isNaN(at)) continue;
      // Clocks of two nodes may differ a little: a lag is never negative.
      last = Math.max(0, now - at) / 1000;
      this.metrics.observe(METRICS.readModelLag, last, { consumer });
    }
    this.metrics.set(METRICS.readModelLagLast, last, { consumer });
  }

  private rememberDecimals(token: Token): void {
    this.decimals.set(token.id, Promise.resolve(token.decimals));
  }

  /** Adds `amount` (base units) as whole units once the token's decimals are known. */
  private addVolume(
    name: MetricName,
    labels: Record<string, string>,
    tokenId: string,
    amount: string,
  ): void {
    let decimals = this.decimals.get(tokenId);
    if (!decimals) {
      decimals = this.opts.decimalsOf(tokenId);
      this.decimals.set(tokenId, decimals);
      // A failed lookup is asked again next time.
      decimals.catch(() => this.decimals.delete(tokenId));
    }
    decimals.then(
      d => this.metrics.increment(name, labels, wholeUnits(amount, d)),
      (err: unknown) =>
        this.logger.warn(
          { tokenId, metric: name, error: (err as Error).message },
          "Volume not counted: the token's decimals are unknown",
        ),
    );
  }
}
