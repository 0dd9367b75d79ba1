import { METRIC, type Context, type Middleware, type ServiceBroker } from "moleculer";
import { defineMiddleware } from "../mixins/define";
import type { Meta } from "../lib/shared/context";

/**
 * Moleculer's request metrics (moleculer.request.total, .error.total, .active, .time), made
 * cheap. Its own Metrics middleware updates five labelled metrics on every call — label
 * hashing, a sliding quantile window and rates each time — and cost the gateway 60 % of its
 * requests/s (docs/benchmarks.md). Here a call adds to plain fields of its handler's closure;
 * once a second the sums go to the registry under Moleculer's names and labels, so
 * Prometheus, the Grafana dashboard and /ops read what they read before, at most a second
 * late. Latency keeps buckets (Prometheus' histogram_quantile), without a quantile window.
 * Takes the place of "Metrics" in the broker's middleware list (moleculer.config.ts).
 */

const FLUSH_MS = 1000;
/** Latency samples kept per handler, caller and second: a bound under any load. */
const MAX_SAMPLES = 1000;
/** Distinct error kinds kept per handler and caller between flushes. */
const MAX_ERROR_KINDS = 20;
/** Caller nodes with labels of their own per handler; node ids change at every restart. */
const MAX_CALLERS = 50;

interface ErrorCount {
  labels: { errorName: string | null; errorCode: unknown; errorType: string | null };
  n: number;
}

/** What one handler did for one caller since the last flush. */
interface Tally {
  labels: { service: string | null; action: string; caller: string | null; type: string };
  total: number;
  active: number;
  times: number[];
  errors: Map<string, ErrorCount>;
}

type Handler = (ctx: Context) => Promise<unknown>;
interface ActionDef {
  name: string;
  service?: { fullName: string };
}

export function RequestMetricsMiddleware(): Middleware {
  const tallies = new Set<Tally>();
  let broker: ServiceBroker | undefined;
  let timer: NodeJS.Timeout | undefined;

  const flush = () => {
    const metrics = broker?.metrics;
    if (!metrics) return;
    for (const t of tallies) {
      if (t.total > 0) metrics.increment(METRIC.MOLECULER_REQUEST_TOTAL, t.labels, t.total);
      metrics.set(METRIC.MOLECULER_REQUEST_ACTIVE, t.active, t.labels);
      for (const ms of t.times) metrics.observe(METRIC.MOLECULER_REQUEST_TIME, ms, t.labels);
      for (const e of t.errors.values())
        metrics.increment(METRIC.MOLECULER_REQUEST_ERROR_TOTAL, { ...t.labels, ...e.labels }, e.n);
      t.total = 0;
      t.times = [];
      t.errors.clear();
    }
  };

  function wrap(type: string, next: Handler, action: ActionDef): Handler {
    if (!broker?.isMetricsEnabled()) return next;
    const service = action.service?.fullName ?? null;
    // One tally per caller node: few, and a node that left keeps only its last counts.
    const byCaller = new Map<string | null, Tally>();
    const tallyOf = (given: string | null): Tally => {
      const caller = byCaller.size < MAX_CALLERS || byCaller.has(given) ? given : "_other";
      let t = byCaller.get(caller);
      if (!t) {
        t = {
          labels: { service, action: action.name, caller, type },
          total: 0,
          active: 0,
          times: [],
          errors: new Map(),
        };
        byCaller.set(caller, t);
        tallies.add(t);
      }
      return t;
    };
    return function requestMetrics(ctx: Context) {
      const t = tallyOf(ctx.caller ?? null);
      const start = performance.now();
      t.total++;
      t.active++;
      const done = () => {
        t.active--;
        // A request that became a stream (Meta.stream) lasted as long as its client stayed.
        if (t.times.length < MAX_SAMPLES && !(ctx.meta as Meta | undefined)?.stream)
          t.times.push(performance.now() - start);
      };
      return next(ctx).then(
        res => {
          done();
          return res;
        },
        (err: { name?: string; code?: unknown; type?: string } | undefined) => {
          done();
          const labels = {
            errorName: err?.name ?? null,
            errorCode: err?.code ?? null,
            errorType: err?.type ?? null,
          };
          const key = `${labels.errorName}|${String(labels.errorCode)}|${labels.errorType}`;
          const kind = t.errors.get(key);
          if (kind) kind.n++;
          else if (t.errors.size < MAX_ERROR_KINDS) t.errors.set(key, { labels, n: 1 });
          throw err;
        },
      );
    };
  }

  const middleware = {
    name: "RequestMetrics",

    created(b: ServiceBroker) {
      broker = b;
      if (!b.isMetricsEnabled()) return;
      const labelNames = ["service", "action", "type", "caller"];
      b.metrics.register({
        name: METRIC.MOLECULER_REQUEST_TOTAL,
        type: METRIC.TYPE_COUNTER,
        labelNames,
        unit: METRIC.UNIT_REQUEST,
        description: "Number of requests",
      });
      b.metrics.register({
        name: METRIC.MOLECULER_REQUEST_ACTIVE,
        type: METRIC.TYPE_GAUGE,
        labelNames,
        unit: METRIC.UNIT_REQUEST,
        description: "Number of active requests",
      });
      b.metrics.register({
        name: METRIC.MOLECULER_REQUEST_ERROR_TOTAL,
        type: METRIC.TYPE_COUNTER,
        labelNames: [...labelNames, "errorName", "errorCode", "errorType"],
        unit: METRIC.UNIT_REQUEST,
        description: "Number of request errors",
      });
      b.metrics.register({
        name: METRIC.MOLECULER_REQUEST_TIME,
        type: METRIC.TYPE_HISTOGRAM,
        labelNames,
        buckets: true,
        quantiles: false,
        unit: METRIC.UNIT_MILLISECONDS,
        description: "Request times in milliseconds (at most 1,000 samples per second each)",
      });
    },

    localAction(next: Handler, action: ActionDef) {
      return wrap("local", next, action);
    },
    remoteAction(next: Handler, action: ActionDef) {
      return wrap("remote", next, action);
    },

    started() {
      timer = setInterval(flush, FLUSH_MS);
      timer.unref();
    },
    stopped() {
      clearInterval(timer);
      flush();
    },
  };
  // Moleculer's Middleware type does not list the handlers' action definition argument.
  return defineMiddleware(middleware);
}
