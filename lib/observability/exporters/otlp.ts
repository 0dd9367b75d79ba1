import { TracerExporters, type Span, type Tracer } from "moleculer";
import { spanIdHex, traceIdHex } from "../trace-tags";

/**
 * Spans to any OpenTelemetry collector (and Jaeger 1.35+) as OTLP/HTTP JSON, POSTed to
 * `endpoint + "/v1/traces"`. Moleculer 0.15 ships no OTLP exporter, and the Jaeger one rests on
 * jaeger-client, retired upstream: this is the one to keep. Spans wait in a bounded queue (the
 * oldest are dropped past `maxQueue`: a collector that is down never grows the process) and
 * go in batches every `flushIntervalMs`, or as soon as `batchSize` are waiting.
 */

export interface OtlpExporterOptions {
  /** The collector's base URL, e.g. http://jaeger:4318. */
  endpoint: string;
  flushIntervalMs?: number;
  batchSize?: number;
  maxQueue?: number;
  /** Extra request headers (an auth header of a hosted collector). */
  headers?: Record<string, string>;
}

type AnyValue = { stringValue: string } | { boolValue: boolean } | { doubleValue: number };
interface KeyValue {
  key: string;
  value: AnyValue;
}

const SPAN_KIND_SERVER = 2;
const STATUS_ERROR = 2;

const nanos = (ms: number): string => (BigInt(Math.round(ms * 1000)) * 1000n).toString();

function attribute(key: string, v: unknown): KeyValue | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "boolean") return { key, value: { boolValue: v } };
  if (typeof v === "number") return { key, value: { doubleValue: v } };
  return { key, value: { stringValue: typeof v === "string" ? v : JSON.stringify(v) } };
}

const attributes = (tags: Record<string, unknown>): KeyValue[] =>
  Object.entries(tags)
    .map(([k, v]) => attribute(k, v))
    .filter((a): a is KeyValue => a !== null);

export class OtlpExporter extends TracerExporters.Base {
  private readonly options: Required<Omit<OtlpExporterOptions, "headers">> & {
    headers: Record<string, string>;
  };
  private queue: Span[] = [];
  private timer: NodeJS.Timeout | null = null;
  private sending: Promise<void> = Promise.resolve();
  dropped = 0;

  constructor(opts: OtlpExporterOptions) {
    super({});
    this.options = {
      endpoint: opts.endpoint.replace(/\/+$/, ""),
      flushIntervalMs: opts.flushIntervalMs ?? 1000,
      batchSize: opts.batchSize ?? 500,
      maxQueue: opts.maxQueue ?? 5000,
      headers: opts.headers ?? {},
    };
  }

  override init(tracer: Tracer): void {
    super.init(tracer);
    this.timer = setInterval(() => void this.flush(), this.options.flushIntervalMs);
    this.timer.unref();
  }

  override spanFinished(span: Span): void {
    this.queue.push(span);
    if (this.queue.length > this.options.maxQueue) {
      this.dropped += this.queue.length - this.options.maxQueue;
      this.queue.splice(0, this.queue.length - this.options.maxQueue);
    }
    if (this.queue.length >= this.options.batchSize) void this.flush();
  }

  /** Sends what is queued; one request at a time, so batches arrive in order. */
  flush(): Promise<void> {
    this.sending = this.sending.then(async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.options.batchSize);
        try {
          const res = await fetch(`${this.options.endpoint}/v1/traces`, {
            method: "POST",
            headers: { "Content-Type": "application/json", ...this.options.headers },
            body: JSON.stringify(this.payload(batch)),
            signal: AbortSignal.timeout(5000),
          });
          if (!res.ok) throw new Error(`collector answered ${res.status}`);
        } catch (err) {
          // Spans are for looking, not for keeping: a batch the collector refused is gone.
          this.logger.debug("OTLP export failed", err);
          return;
        }
      }
    });
    return this.sending;
  }

  override async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }

  /** An ExportTraceServiceRequest: one resource (service) per Moleculer service. */
  payload(spans: Span[]): object {
    const byService = new Map<string, Span[]>();
    for (const span of spans) {
      const name = span.service?.fullName ?? "moleculer";
      byService.set(name, [...(byService.get(name) ?? []), span]);
    }
    return {
      resourceSpans: [...byService].map(([service, list]) => ({
        resource: {
          attributes: attributes({
            "service.name": service,
            "service.instance.id": this.broker.nodeID,
          }),
        },
        scopeSpans: [{ scope: { name: "mintmesh" }, spans: list.map(s => this.otlpSpan(s)) }],
      })),
    };
  }

  private otlpSpan(span: Span): object {
    const tags: Record<string, unknown> = this.flattenTags({
      ...span.tags,
      "span.type": span.type,
    });
    const error = span.error ? this.errorToObject(span.error) : null;
    if (error) Object.assign(tags, this.flattenTags({ error }));
    const start = span.startTime ?? Date.now();
    return {
      traceId: traceIdHex(span.traceID),
      spanId: spanIdHex(span.id),
      ...(span.parentID ? { parentSpanId: spanIdHex(span.parentID) } : {}),
      name: span.name,
      kind: SPAN_KIND_SERVER,
      startTimeUnixNano: nanos(start),
      endTimeUnixNano: nanos(span.finishTime ?? start),
      attributes: attributes(tags),
      status: error ? { code: STATUS_ERROR, message: String(error.message ?? "") } : {},
    };
  }
}
