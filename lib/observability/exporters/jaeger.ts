import { TracerExporters } from "moleculer";
import { spanIdHex, traceIdHex } from "../trace-tags";

/**
 * Moleculer's Jaeger exporter (jaeger-client, Thrift over HTTP to JAEGER_ENDPOINT) with ids
 * every request id converts to: the stock one reads an id as hex up to its first non-hex
 * character, so a client's `X-Request-ID: order-42` or a saga id gave an empty or truncated
 * trace id, and the spans of one request could not be found together. Trace ids are 128 bits
 * (the gateway's request ids are UUIDs: the trace id is the request id without its dashes).
 */
export class JaegerExporter extends TracerExporters.Jaeger {
  convertTraceID(id: string | null | undefined): Buffer | null {
    return id ? Buffer.from(traceIdHex(id), "hex") : null;
  }

  convertSpanID(id: string | null | undefined): Buffer | null {
    return id ? Buffer.from(spanIdHex(id), "hex") : null;
  }
}
