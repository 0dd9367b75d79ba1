import type { Server } from "node:http";
import { ServiceBroker, type Context } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OtlpExporter } from "../../../../lib/observability/exporters/otlp";
import {
  TRACE_ERROR_FIELDS,
  traceIdHex,
  traceTags,
} from "../../../../lib/observability/trace-tags";
import { startReceiver, type Received } from "../../../helpers/http";

/**
 * lib/observability/exporters/otlp.ts against a stand-in OTLP/HTTP collector on loopback: a broker with the
 * project's span tags calls an action that calls another and one that fails, under a client's
 * request id that is not hex. What arrives at /v1/traces is OTLP JSON with the derived trace
 * id, parent links, the tags as attributes, the error as the status, and no password.
 */

interface KeyValue {
  key: string;
  value: { stringValue?: string; doubleValue?: number; boolValue?: boolean };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: KeyValue[];
  status: { code?: number; message?: string };
}
interface Export {
  resourceSpans: Array<{
    resource: { attributes: KeyValue[] };
    scopeSpans: Array<{ spans: OtlpSpan[] }>;
  }>;
}

const attr = (kvs: KeyValue[], key: string) => {
  const v = kvs.find(a => a.key === key)?.value;
  return v?.stringValue ?? v?.doubleValue ?? v?.boolValue;
};

describe("OTLP exporter", () => {
  const posts: Received[] = [];
  let collector: Server;
  let broker: ServiceBroker;

  beforeAll(async () => {
    let url: string;
    ({ server: collector, url } = await startReceiver((got, res) => {
      posts.push(got);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    }));
    broker = new ServiceBroker({
      logger: false,
      nodeID: "otlp-node",
      tracing: {
        enabled: true,
        tags: { action: traceTags },
        errorFields: TRACE_ERROR_FIELDS,
        exporter: [new OtlpExporter({ endpoint: `${url}/`, flushIntervalMs: 100 })] as never,
      },
    });
    broker.createService({
      name: "vault",
      actions: {
        open: {
          params: { who: "string", password: "string" },
          handler: (ctx: Context<{ who: string }>) =>
            ctx.call("vault.inner", { who: ctx.params.who }),
        },
        inner: { handler: () => "ok" },
        fail: {
          handler() {
            throw new Error("the vault is stuck");
          },
        },
      },
    });
    await broker.start();
  });
  afterAll(async () => {
    await new Promise(resolve => collector?.close(resolve));
  });

  it("posts OTLP JSON with the request's trace, parent links and tags, never a secret", async () => {
    const requestID = "order-42.retry:1";
    const password = "hunter2-very-secret";
    await broker.call("vault.open", { who: "ann", password }, { requestID });
    await expect(broker.call("vault.fail", {}, { requestID })).rejects.toThrow("stuck");
    // stop() flushes what is queued.
    await broker.stop();

    expect(posts.length).toBeGreaterThan(0);
    for (const p of posts) {
      expect(p.url).toBe("/v1/traces");
      expect(p.type).toBe("application/json");
      expect(p.body).not.toContain(password);
    }
    const exports = posts.map(p => JSON.parse(p.body) as Export);
    const resources = exports.flatMap(e => e.resourceSpans);
    expect(resources.map(r => attr(r.resource.attributes, "service.name"))).toContain("vault");
    const spans = resources.flatMap(r => r.scopeSpans.flatMap(s => s.spans));
    const byName = (name: string) => spans.find(s => s.name === name)!;
    const outer = byName("action 'vault.open'");
    const inner = byName("action 'vault.inner'");
    const failed = byName("action 'vault.fail'");

    for (const s of [outer, inner, failed]) {
      expect(s.traceId).toBe(traceIdHex(requestID));
      expect(s.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(s.spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(attr(s.attributes, "requestID")).toBe(requestID);
      expect(attr(s.attributes, "nodeID")).toBe("otlp-node");
    }
    expect(outer.parentSpanId).toBeUndefined();
    expect(inner.parentSpanId).toBe(outer.spanId);
    expect(attr(inner.attributes, "caller")).toBe("vault");
    expect(attr(outer.attributes, "action.name")).toBe("vault.open");
    expect(attr(outer.attributes, "params.who")).toBe("ann");
    expect(attr(outer.attributes, "params.password")).toBe("[redacted]");
    expect(failed.status).toEqual({ code: 2, message: "the vault is stuck" });
    expect(attr(failed.attributes, "error.message")).toBe("the vault is stuck");
    expect(outer.status).toEqual({});
  });

  it("keeps at most maxQueue spans while the collector does not take them", async () => {
    // Nothing listens on port 9 of loopback: every POST fails at once.
    const exporter = new OtlpExporter({
      endpoint: "http://127.0.0.1:9",
      maxQueue: 3,
      batchSize: 100,
      flushIntervalMs: 60_000,
    });
    const dead = new ServiceBroker({
      logger: false,
      tracing: { enabled: true, exporter: [exporter] as never },
    });
    dead.createService({ name: "noisy", actions: { ping: () => "pong" } });
    await dead.start();
    for (let i = 0; i < 5; i++) await dead.call("noisy.ping");
    expect(exporter.dropped).toBe(2);
    await dead.stop();
  });
});
