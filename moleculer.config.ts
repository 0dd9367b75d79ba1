import type { BrokerOptions, Errors, TracerOptions } from "moleculer";
import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import { natsConnection } from "./middlewares/channels";
import { registerNatsChannelsAdapter } from "./lib/messaging/nats-channels-adapter";
import { BoundedMemoryCacher, SafeRedisCacher } from "./middlewares/cachers";
import { TRACE_ERROR_FIELDS, traceTags } from "./lib/observability/trace-tags";
import { JaegerExporter } from "./lib/observability/exporters/jaeger";
import { OtlpExporter } from "./lib/observability/exporters/otlp";
import { envBool, envInt, envStr } from "./lib/shared/env";
import {
  ActionBulkheadMiddleware,
  bulkheadGaugesReporter,
} from "./middlewares/action-bulkhead.middleware";
import { FaultInjectionMiddleware } from "./middlewares/fault-injection.middleware";
import { RequestContextMiddleware, logMixin } from "./middlewares/request-context.middleware";
import { HealthMiddleware } from "./middlewares/health.middleware";
import { NatsWritesMiddleware } from "./middlewares/nats-writes.middleware";
import { OpsMetricsMiddleware } from "./middlewares/ops-metrics.middleware";
import { OpenApiMiddleware } from "./middlewares/openapi.middleware";
import { RequestMetricsMiddleware } from "./middlewares/request-metrics.middleware";
import { NearCacheMiddleware } from "./middlewares/near-cache.middleware";

/**
 * Broker options, all read from env (docs/architecture.md). The defaults run
 * one process with nothing installed: no transporter, memory cacher, in-memory channels.
 */
const transporter = envStr("TRANSPORTER");
registerNatsChannelsAdapter();
const redisUrl = envStr("REDIS_URL");
const channelsUrl = envStr("CHANNELS_URL");
const metricsPort = envStr("METRICS_PORT");
const jaegerEndpoint = envStr("JAEGER_ENDPOINT");
const otlpEndpoint = envStr("OTLP_ENDPOINT");
const logLevel = envStr("LOG_LEVEL", "info");

/** Timeouts and unreachable nodes are retryable; a client error never is. */
const isRetryable = (err: Error): boolean => Boolean((err as Errors.MoleculerError).retryable);

/**
 * The NATS channels adapter takes its server from `nats.url` only (a bare URL string
 * would connect to localhost), and credentials from its connection options; failed
 * events go to a dead-letter stream, not dropped. Streams keep events for
 * CHANNELS_MAX_AGE_MS (3 days): long enough for a consumer to be down and catch up,
 * shorter than the read models' memory of what they applied (READ_MODEL_RETENTION_MS),
 * so nothing a stream can still deliver is forgotten. Streams made before keep their
 * config: change it with `nats stream edit`.
 */
function channelsAdapter(raw: string | undefined) {
  if (!raw) return "Fake";
  if (!raw.startsWith("nats://")) return raw;
  const { url, user, pass } = natsConnection(raw);
  // @moleculer/channels' adapter, talking to the server more sparingly (lib/messaging/nats-channels-adapter.ts).
  return {
    type: "MintmeshNATS",
    options: {
      maxRetries: envInt("CHANNELS_MAX_RETRIES", 10),
      // One in flight per consumer keeps each channel in order; consumers dedupe by eventId anyway.
      maxInFlight: envInt("CHANNELS_MAX_IN_FLIGHT", 1),
      deadLettering: { enabled: true, queueName: "DEAD_LETTERS" },
      nats: {
        url,
        // Without a stack captured per JetStream publish (a request to the server): a publish
        // that times out is retried by the outbox, whose log names it anyway.
        connectionOptions: { noAsyncTraces: true, ...(user ? { user, pass } : {}) },
        streamConfig: { max_age: envInt("CHANNELS_MAX_AGE_MS", 3 * 24 * 3600_000) * 1e6 },
        // How long a crashed consumer's in-flight message blocks its channel.
        consumerOptions: { config: { ack_wait: envInt("CHANNELS_ACK_WAIT_MS", 10_000) * 1e6 } },
      },
    },
  };
}

/** TRACING_SAMPLE_RATE: the share of requests traced, 0 to 1 (default all). */
function sampleRate(raw: string | undefined): number {
  const rate = raw === undefined ? 1 : Number(raw);
  if (!Number.isFinite(rate) || rate < 0 || rate > 1) {
    throw new Error(`TRACING_SAMPLE_RATE must be a number from 0 to 1, not "${raw}"`);
  }
  return rate;
}

const config: BrokerOptions = {
  // Tests run many clusters on one NATS server; a namespace keeps them apart.
  namespace: envStr("NAMESPACE", "mintmesh"),
  nodeID: envStr("NODE_ID") ?? null,

  logger: {
    type: "Pino",
    options: {
      level: logLevel,
      pino: {
        options: { mixin: logMixin, base: { pid: process.pid } },
      },
    },
  },
  // LOG_LEVEL as given (info, debug, …); the typings want the union of level names.
  logLevel: logLevel as BrokerOptions["logLevel"],

  // Moleculer takes a URL ("nats://…"); its typings list transporter names only.
  transporter: (transporter ?? null) as BrokerOptions["transporter"],
  serializer: "JSON",

  // Redis, shared by the nodes, whose refused writes are logged (middlewares/cachers.ts); else memory
  // bounded in entries and in JSON size, whatever clients ask for (docs/architecture.md rule 10).
  cacher: redisUrl
    ? new SafeRedisCacher({
        prefix: envStr("CACHE_PREFIX", "mintmesh"),
        ttl: 30,
        // Handed to ioredis, which takes a URL; Moleculer's typings want an options object.
        redis: redisUrl as unknown as Record<string, unknown>,
      })
    : new BoundedMemoryCacher({
        ttl: 30,
        clone: true,
        max: envInt("CACHE_MAX_ENTRIES", 1000),
        maxSize: envInt("CACHE_MAX_BYTES", 32 * 1024 * 1024),
      }),

  // 3 s: a user-facing call that has not answered by then has failed for the user anyway.
  requestTimeout: envInt("REQUEST_TIMEOUT", 3000),

  // Retries only errors Moleculer marks retryable (timeouts, unreachable nodes). A timed-out
  // call may have run: actions that are neither idempotent nor keyed opt out with
  // `retryPolicy: { enabled: false }` (it travels to callers with the action). 3 retries: with
  // a dead replica still listed, each try may land on it; the 4th comes after it is dropped.
  retryPolicy: {
    enabled: true,
    retries: envInt("RETRIES", 3),
    delay: 50,
    maxDelay: 800,
    factor: 2,
    check: isRetryable,
  },

  // Moleculer sweeps every heartbeatTimeout s for nodes silent longer than that, so a SIGKILLed
  // node stops getting calls 3-6 s after its last beat; three missed 1 s beats before that,
  // and a node dropped by mistake rejoins with its next beat.
  heartbeatInterval: envInt("HEARTBEAT_INTERVAL", 1),
  heartbeatTimeout: envInt("HEARTBEAT_TIMEOUT", 3),

  contextParamsCloning: false,
  maxCallLevel: 50,
  tracking: { enabled: true, shutdownTimeout: 5000 },

  registry: {
    strategy: envStr("BALANCER_STRATEGY", "RoundRobin"),
    preferLocal: true,
  },

  circuitBreaker: {
    enabled: envBool("CIRCUIT_BREAKER", true),
    // Opens at 50 % failures over a 60 s window once 20 calls give a meaningful rate.
    threshold: 0.5,
    windowTime: 60,
    minRequestCount: envInt("CB_MIN_REQUESTS", 20),
    // Half-open after 30 s: long enough for a restart, short enough to notice recovery.
    halfOpenTime: envInt("CB_HALF_OPEN_MS", 30_000),
    // Only server-side faults count; a 4xx is the caller's fault, not the node's.
    // A full bulkhead (QUEUE_FULL) is a healthy node shedding load: counting it would turn a
    // burst into halfOpenTime of refusals for every caller.
    check: (err: Error) => {
      const { code, type } = err as Errors.MoleculerError;
      if (type === "QUEUE_FULL") return false;
      // A store that cannot write (full disk) refuses at once by itself and readiness says so;
      // an open breaker would go on refusing for halfOpenTime after the disk has room again.
      if (type === "STORE_UNAVAILABLE") return false;
      return typeof code !== "number" || code >= 500 || isRetryable(err);
    },
  },

  // Per action (ActionBulkheadMiddleware below), never on event handlers. The in-memory
  // channels adapter bounds its consumers with an event bulkhead of maxInFlight that takes
  // its queue size from here: 0 (unbounded) so a burst waits instead of being dropped.
  bulkhead: { enabled: false, maxQueueSize: 0 },

  validator: true,

  // On by default, so that any node can be asked with `$node.metrics` (the /ops page does);
  // served to Prometheus on METRICS_PORT/metrics when set. Domain and operations metrics:
  // lib/observability/domain-metrics.ts, docs/observability.md.
  metrics: {
    enabled: envBool("METRICS", true),
    // CPU and memory of every node, also under NODE_ENV=test (Moleculer's default skips them there).
    collectProcessMetrics: true,
    reporter: [
      // Copies Moleculer's bulkhead gauges to mintmesh.bulkhead.* (labelled by action).
      bulkheadGaugesReporter(),
      ...(metricsPort
        ? [
            {
              type: "Prometheus" as const,
              options: { port: Number(metricsPort), path: "/metrics" },
            },
          ]
        : []),
    ],
  },

  tracing: {
    enabled: Boolean(jaegerEndpoint || otlpEndpoint) || envStr("TRACING") === "console",
    // Actions, events and (mixins/read-model.mixin.ts) channel handlers; the outbox relay and the
    // saga steps add spans of their own. A span's trace id is its request id (lib/observability/trace-tags.ts).
    events: true,
    // Decided once per trace, where it starts (the gateway): the nodes it reaches follow.
    sampling: { rate: sampleRate(envStr("TRACING_SAMPLE_RATE")) },
    // Spans record params without secrets, and errors without their data (lib/observability/trace-tags.ts).
    tags: { action: traceTags, event: traceTags },
    errorFields: TRACE_ERROR_FIELDS,
    // Instances (Moleculer takes them; its typings list option objects only).
    exporter: [
      ...(jaegerEndpoint
        ? [
            new JaegerExporter({
              endpoint: jaegerEndpoint,
              sampler: { type: "Const", options: { decision: 1 } },
            }),
          ]
        : []),
      ...(otlpEndpoint ? [new OtlpExporter({ endpoint: otlpEndpoint })] : []),
      ...(jaegerEndpoint || otlpEndpoint ? [] : [{ type: "Console" }]),
    ] as unknown as TracerOptions["exporter"],
  },

  middlewares: [
    RequestContextMiddleware,
    // Per action and node: enough to keep two cores busy, a bounded queue beyond; the
    // overflow is a 503 to the client, never a crash.
    ActionBulkheadMiddleware({
      concurrency: envInt("BULKHEAD_CONCURRENCY", 100),
      maxQueueSize: envInt("BULKHEAD_QUEUE", 1000),
    }),
    // Every node's /health/live and /health/ready on HEALTH_PORT (off when unset), for k8s and Docker probes.
    HealthMiddleware(),
    // Registers the domain metrics; counts this node's circuit-breaker changes.
    OpsMetricsMiddleware(),
    // Moleculer's NATS transporter writes once per turn of the event loop (lib/messaging/nats-writes.ts).
    NatsWritesMiddleware(),
    // Each action's API description travels with it as JSON text, so a gateway on another node
    // builds the same /api/openapi.json (the registry's JSON drops regexes and shared objects).
    OpenApiMiddleware,
    // The gateway's copy of the catalog's reads, cleaned by catalog.changed (lib/gateway/near-cache.ts).
    NearCacheMiddleware(),
    // Durable events: NATS JetStream (or Redis streams) when CHANNELS_URL is set, in-memory otherwise.
    // Its typings make every option required; the middleware fills in defaults for the rest.
    ChannelsMiddleware({
      adapter: channelsAdapter(channelsUrl),
      context: true,
    } as Parameters<typeof ChannelsMiddleware>[0]),
    // Last: the innermost wrapper of each local action, so injected faults act inside this
    // node's bulkhead, breaker and timeout like a failing handler. Inert unless FAULTS is set.
    FaultInjectionMiddleware(),
    // Moleculer's own, in its order (internalMiddlewares: false below), with RequestMetrics in
    // place of "Metrics", whose per-call cost was most of the gateway's.
    "ActionHook",
    "Validator",
    "Bulkhead",
    "Cacher",
    "ContextTracker",
    "CircuitBreaker",
    "Timeout",
    "Retry",
    "Fallback",
    "ErrorHandler",
    "Tracing",
    RequestMetricsMiddleware(),
    "Debounce",
    "Throttle",
    // `npm run dev` runs moleculer-runner with --hot, which turns hotReload on; the broker adds
    // its HotReload middleware only with its internal ones, so it is listed here.
    ...(process.argv.includes("--hot") ? ["HotReload"] : []),
  ],
  internalMiddlewares: false,
};

export = config;
