/**
 * What the operator page shows, built from what every node answers: its registry entry, its
 * `$node.health` and its `$node.metrics` (the names of docs/observability.md). Pure parts
 * here (reading metric lists, the rate ring) and the calls that gather it (askNode, recentSagas).
 */

import type { SagaSummary } from "../../sagas/saga-log";
import type { WebhookStats } from "../../webhooks/delivery-queue";
import type { MarketOpsStats } from "../../market/escrow-holdings";

/** One value of a metric as `$node.metrics` lists it (gauges and counters; histograms differ). */
export interface MetricValue {
  key?: string;
  value?: number;
  labels?: Record<string, unknown>;
}
export interface MetricInfo {
  name: string;
  type?: string;
  values?: MetricValue[];
}

/** What the page asks each node for: the domain's own metrics, breakers and request counts. */
export const METRIC_INCLUDES = [
  "mintmesh.**",
  "moleculer.request.total",
  "moleculer.circuit-breaker.opened.active",
  "moleculer.circuit-breaker.half-opened.active",
];

export interface OpsNode {
  id: string;
  /** In the registry and heartbeating; false once it went silent (until the registry drops it). */
  available: boolean;
  /** The node this gateway runs in. */
  local: boolean;
  hostname: string | null;
  /** Services it hosts (Moleculer's internal `$…` ones left out). */
  services: string[];
  /** Host CPU use, percent, from the node's heartbeats. */
  cpu: number | null;
  /** From `$node.health`; null when it did not answer in time. */
  memory: { rssBytes: number; heapUsedBytes: number; hostUsedPercent: number } | null;
  uptimeSec: number | null;
  /** ok: answered; unreachable: listed as available but no answer in time; gone: the registry says it left. */
  health: "ok" | "unreachable" | "gone";
  /** Whether its metrics registry answered (METRICS=false on that node: no). */
  metrics: boolean;
}

export interface BreakerRow {
  /** The node whose calls the breaker guards (the caller). */
  node: string;
  action: string;
  /** The node the guarded calls went to. */
  target: string;
  state: "open" | "half-open";
}

export interface RatePoint {
  /** ms since epoch. */
  t: number;
  requests: number;
  transfers: number;
}

export interface OpsSnapshot {
  at: string;
  nodes: OpsNode[];
  breakers: BreakerRow[];
  bulkheads: Array<{ node: string; action: string; active: number; queue: number }>;
  outboxes: Array<{ node: string; service: string; backlog: number }>;
  lag: Array<{ node: string; consumer: string; seconds: number }>;
  sagas: { available: boolean; rows: SagaSummary[] };
  /** The webhook delivery backlog and failures; null when the webhooks service did not answer. */
  webhooks: WebhookStats | null;
  /** The market's escrow beside what it holds, and the auctions ending soonest; null when the market did not answer. */
  market: MarketOpsStats | null;
  /** requests/s (actions handled, cluster-wide) and transfers/s over the last minutes. */
  rates: RatePoint[];
}

const str = (v: unknown): string => (v === undefined || v === null ? "" : String(v));
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);

function valuesOf(metrics: MetricInfo[], name: string): MetricValue[] {
  return metrics.find(m => m.name === name)?.values ?? [];
}

/** Sum of a counter's values, those passing `keep`. */
export function sumOf(
  metrics: MetricInfo[],
  name: string,
  keep: (labels: Record<string, unknown>) => boolean = () => true,
): number {
  return valuesOf(metrics, name)
    .filter(v => keep(v.labels ?? {}))
    .reduce((sum, v) => sum + num(v.value), 0);
}

/** The `caller` of the page's own calls, so that they are not counted as the cluster's traffic. */
export const OPS_CALLER = "$ops";

/**
 * Requests a node handled: its own action calls (type "local"), not the ones it only passed
 * on (counted again where handled), nor this page's own polling (`$node.*`, caller "$ops").
 */
export function handledRequests(metrics: MetricInfo[]): number {
  return sumOf(
    metrics,
    "moleculer.request.total",
    l => l.type === "local" && !str(l.action).startsWith("$") && l.caller !== OPS_CALLER,
  );
}

export const transfersCounted = (metrics: MetricInfo[]): number =>
  sumOf(metrics, "mintmesh.transfers.total");

/**
 * Breakers of one node that are not closed: the contract's mintmesh.breaker.open gauge and
 * Moleculer's own circuit-breaker gauges (so the page shows breakers whichever is there).
 */
export function breakersOf(node: string, metrics: MetricInfo[]): BreakerRow[] {
  const rows = new Map<string, BreakerRow>();
  const put = (action: string, target: string, state: BreakerRow["state"]) => {
    const key = `${action}|${target}`;
    // "open" wins over a stale half-open value (Moleculer leaves half-opened.active at 1 on re-open).
    if (rows.get(key)?.state !== "open") rows.set(key, { node, action, target, state });
  };
  for (const v of valuesOf(metrics, "moleculer.circuit-breaker.half-opened.active"))
    if (num(v.value) > 0) put(str(v.labels?.action), str(v.labels?.affectedNodeID), "half-open");
  for (const v of valuesOf(metrics, "moleculer.circuit-breaker.opened.active"))
    if (num(v.value) > 0) put(str(v.labels?.action), str(v.labels?.affectedNodeID), "open");
  for (const v of valuesOf(metrics, "mintmesh.breaker.open")) {
    const key = `${str(v.labels?.action)}|${str(v.labels?.target)}`;
    // The contract's gauge is 1 for open and half-open alike: it only adds what Moleculer's missed.
    if (num(v.value) > 0 && !rows.has(key))
      put(str(v.labels?.action), str(v.labels?.target), "open");
  }
  return [...rows.values()];
}

export function bulkheadsOf(node: string, metrics: MetricInfo[]): OpsSnapshot["bulkheads"] {
  const byAction = new Map<
    string,
    { node: string; action: string; active: number; queue: number }
  >();
  const row = (action: string) => {
    let r = byAction.get(action);
    if (!r) byAction.set(action, (r = { node, action, active: 0, queue: 0 }));
    return r;
  };
  for (const v of valuesOf(metrics, "mintmesh.bulkhead.active"))
    row(str(v.labels?.action)).active = num(v.value);
  for (const v of valuesOf(metrics, "mintmesh.bulkhead.queue"))
    row(str(v.labels?.action)).queue = num(v.value);
  // Idle actions are many and say nothing: the busy ones only, not this page's own `$node.*` calls.
  return [...byAction.values()].filter(
    r => (r.active > 0 || r.queue > 0) && !r.action.startsWith("$"),
  );
}

export function outboxesOf(node: string, metrics: MetricInfo[]): OpsSnapshot["outboxes"] {
  return valuesOf(metrics, "mintmesh.outbox.backlog").map(v => ({
    node,
    service: str(v.labels?.service),
    backlog: num(v.value),
  }));
}

export function lagOf(node: string, metrics: MetricInfo[]): OpsSnapshot["lag"] {
  return valuesOf(metrics, "mintmesh.readmodel.lag.last").map(v => ({
    node,
    consumer: str(v.labels?.consumer),
    seconds: num(v.value),
  }));
}

/**
 * requests/s and transfers/s from per-node counters, over the last `capacity` samples. Rates
 * are per-node deltas summed: a node that restarted (its counter went down) counts from zero,
 * one that left simply stops adding.
 */
export class RateRing {
  private readonly points: RatePoint[] = [];
  private prev = new Map<string, { requests: number; transfers: number }>();
  private prevAt = 0;

  constructor(readonly capacity: number) {}

  add(t: number, counters: Map<string, { requests: number; transfers: number }>): void {
    const dt = (t - this.prevAt) / 1000;
    if (this.prevAt > 0 && dt > 0) {
      let requests = 0;
      let transfers = 0;
      for (const [node, c] of counters) {
        const p = this.prev.get(node);
        if (!p) continue; // first sample of this node: its baseline
        requests += c.requests >= p.requests ? c.requests - p.requests : c.requests;
        transfers += c.transfers >= p.transfers ? c.transfers - p.transfers : c.transfers;
      }
      this.points.push({ t, requests: requests / dt, transfers: transfers / dt });
      if (this.points.length > this.capacity)
        this.points.splice(0, this.points.length - this.capacity);
    }
    // Only the nodes of this sample: bounded by the cluster's size.
    this.prev = new Map(counters);
    this.prevAt = t;
  }

  list(): RatePoint[] {
    return this.points.map(p => ({
      t: p.t,
      requests: Math.round(p.requests * 100) / 100,
      transfers: Math.round(p.transfers * 100) / 100,
    }));
  }
}

/** A node as the registry lists it (moleculer's typings leave the fields open). */
export interface RegistryNode {
  id: string;
  available: boolean;
  local: boolean;
  hostname?: string | null;
  cpu?: number | null;
  services?: Array<{ name: string }>;
}
/** What `$node.health` answers, as far as the page shows it. */
export interface NodeHealth {
  cpu?: { utilization?: number | null };
  mem?: { free: number; total: number };
  process?: { memory?: { rss: number; heapUsed: number }; uptime?: number };
}

/** One node as the page asked it: its health (when asked) and metrics, or null. */
export interface NodeAnswer {
  n: RegistryNode;
  health: NodeHealth | null;
  metrics: MetricInfo[] | null;
}

/** Each answering node's counters, for the requests/s and transfers/s ring. */
export function countersOf(
  answers: NodeAnswer[],
): Map<string, { requests: number; transfers: number }> {
  const counters = new Map<string, { requests: number; transfers: number }>();
  for (const { n, metrics } of answers)
    if (metrics)
      counters.set(n.id, {
        requests: handledRequests(metrics),
        transfers: transfersCounted(metrics),
      });
  return counters;
}

/** The page's view of the cluster from what each node answered; `full`: health was asked. */
export function snapshotOf(
  answers: NodeAnswer[],
  recent: SagaSummary[] | null,
  hooks: WebhookStats | null,
  market: MarketOpsStats | null,
  rates: RatePoint[],
  now: number,
  full: boolean,
): OpsSnapshot {
  const snapshot: OpsSnapshot = {
    at: new Date(now).toISOString(),
    nodes: answers.map(({ n, health, metrics }): OpsNode => {
      const mem = health?.process?.memory;
      return {
        id: n.id,
        available: n.available,
        local: n.local,
        hostname: n.hostname ?? null,
        services: [...new Set((n.services ?? []).map(s => s.name))]
          .filter(s => !s.startsWith("$"))
          .sort(),
        // From heartbeats; a node without a transporter has none: its load instead.
        cpu: !n.available
          ? null
          : typeof n.cpu === "number"
            ? n.cpu
            : (health?.cpu?.utilization ?? null),
        memory:
          mem && health?.mem
            ? {
                rssBytes: mem.rss,
                heapUsedBytes: mem.heapUsed,
                hostUsedPercent: Math.round((1 - health.mem.free / health.mem.total) * 1000) / 10,
              }
            : null,
        uptimeSec:
          typeof health?.process?.uptime === "number" ? Math.round(health.process.uptime) : null,
        health: !n.available ? "gone" : health || (!full && metrics) ? "ok" : "unreachable",
        metrics: Boolean(metrics),
      };
    }),
    // Breakers of this page's own `$node.*` calls (to a node that just died) are noise.
    breakers: answers
      .flatMap(({ n, metrics }) => (metrics ? breakersOf(n.id, metrics) : []))
      .filter(b => !b.action.startsWith("$")),
    bulkheads: answers.flatMap(({ n, metrics }) => (metrics ? bulkheadsOf(n.id, metrics) : [])),
    outboxes: answers.flatMap(({ n, metrics }) => (metrics ? outboxesOf(n.id, metrics) : [])),
    lag: answers.flatMap(({ n, metrics }) => (metrics ? lagOf(n.id, metrics) : [])),
    sagas: { available: Boolean(recent), rows: recent ?? [] },
    webhooks: hooks,
    market,
    rates,
  };
  snapshot.nodes.sort((a, b) => a.id.localeCompare(b.id));
  return snapshot;
}
