import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { traceIdHex } from "../../lib/observability/trace-tags";
import {
  NATS_URL,
  ROOT,
  clusterDown,
  useCluster,
  waitUntil,
  type Gateway,
} from "../helpers/cluster";
import { registerUser } from "../helpers/http";
import { createToken } from "../helpers/tokens";

/**
 * One REST request is one trace across the cluster: users, tokens and catalog each in a process
 * of its own on NATS (JetStream channels), the gateway in another, all exporting to a stand-in
 * Jaeger collector on loopback (JAEGER_ENDPOINT: jaeger-client's HTTP sender, a Thrift `Batch`
 * in the binary protocol per POST). The stand-in decodes what arrives with thriftrw and the
 * IDL jaeger-client ships. For one transfer, sent with a client's X-Request-ID that is not hex,
 * the spans of the gateway, tokens and the catalog's asynchronous read-model update (published
 * later by the outbox relay) share one trace id, every parent is in the trace, and nothing that
 * arrived holds a password or a JWT.
 */

interface Tag {
  key: string;
  vType: string;
  vStr?: string | null;
  vDouble?: number | null;
  vBool?: boolean | null;
}
interface ThriftSpan {
  traceIdLow: Buffer;
  traceIdHigh: Buffer;
  spanId: Buffer;
  parentSpanId: Buffer;
  operationName: string;
  tags: Tag[] | null;
}
interface ThriftBatch {
  process: { serviceName: string };
  spans: ThriftSpan[];
}
interface ThriftModule {
  Thrift: new (o: { source: string; allowOptionalArguments: boolean }) => {
    Batch: {
      rw: { readFrom(b: Buffer, offset: number): { err: Error | null; value: ThriftBatch } };
    };
  };
}

/** A span as Jaeger would show it: ids in hex, the process's service name, tags by key. */
interface Received {
  traceId: string;
  spanId: string;
  parentId: string;
  name: string;
  service: string;
  tags: Record<string, string | number | boolean | undefined>;
}

const ZERO = "0000000000000000";

function jaegerDecoder(): (body: Buffer) => Received[] {
  const require = createRequire(path.join(ROOT, "package.json"));
  const { Thrift } = require("thriftrw") as ThriftModule;
  const idl = require.resolve("jaeger-client/dist/src/jaeger-idl/thrift/jaeger.thrift");
  const thrift = new Thrift({
    source: fs.readFileSync(idl, "ascii"),
    allowOptionalArguments: true,
  });
  return body => {
    const { err, value } = thrift.Batch.rw.readFrom(body, 0);
    if (err) throw err;
    return value.spans.map(s => ({
      traceId: s.traceIdHigh.toString("hex") + s.traceIdLow.toString("hex"),
      spanId: s.spanId.toString("hex"),
      parentId: s.parentSpanId.toString("hex") || ZERO,
      name: s.operationName,
      service: value.process.serviceName,
      tags: Object.fromEntries(
        (s.tags ?? []).map(t => [t.key, t.vStr ?? t.vDouble ?? t.vBool ?? undefined]),
      ),
    }));
  };
}

describe.skipIf(clusterDown())("a transfer's trace across the cluster", () => {
  const cluster = useCluster("traces");
  const bodies: Buffer[] = [];
  const spans: Received[] = [];
  let collector: http.Server;
  let gw: Gateway;

  beforeAll(async () => {
    const decode = jaegerDecoder();
    collector = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        bodies.push(body);
        spans.push(...decode(body));
        res.writeHead(202).end();
      });
    });
    await new Promise<void>(resolve => collector.listen(0, "127.0.0.1", resolve));
    const { port } = collector.address() as AddressInfo;
    const env = {
      JAEGER_ENDPOINT: `http://127.0.0.1:${port}/api/traces`,
      CHANNELS_URL: NATS_URL,
      DATA_DIR: ":memory:",
      STORE_SYNC: "false",
    };
    await Promise.all([
      cluster.node({ name: "users", services: ["users"], env }),
      cluster.node({ name: "tokens", services: ["tokens"], env }),
      cluster.node({ name: "catalog", services: ["catalog"], env }),
    ]);
    gw = await cluster.gateway({
      env: { ...env, RATE_LIMIT_MAX: "0", READY_SERVICES: "users,tokens,catalog" },
    });
  });
  afterAll(async () => {
    collector?.closeAllConnections();
    await new Promise(resolve => collector?.close(resolve));
  });

  it("is one trace from the gateway through tokens to the catalog's read model", async () => {
    const [ann, bob] = [await registerUser(gw.client, "ann"), await registerUser(gw.client, "bob")];
    const token = await createToken(gw.client, ann.token, { initialSupply: "1000" });
    const login = await gw.client.post<{ token: string }>("/api/auth/login", {
      email: ann.email,
      password: "correct horse battery",
    });
    expect(login.status).toBe(200);

    // A client's own request id, not hex: its trace id is derived from it (lib/observability/trace-tags.ts).
    const requestId = `order-${randomBytes(4).toString("hex")}.x`;
    const res = await gw.client.post(
      `/api/tokens/${token.id}/transfers`,
      { to: bob.id, amount: "7" },
      { token: ann.token, headers: { "x-request-id": requestId } },
    );
    expect(res.status).toBe(201);
    expect(res.headers.get("x-request-id")).toBe(requestId);
    const traceId = traceIdHex(requestId);

    const trace = () => spans.filter(s => s.traceId === traceId);
    const channelSpan = () =>
      trace().find(s => s.service === "catalog" && s.tags["span.type"] === "channel");
    await waitUntil(() => channelSpan(), 30_000);
    // Jaeger's reporters flush each second: let the rest of the trace arrive.
    await waitUntil(() => {
      const ids = new Set(trace().map(s => s.spanId));
      return trace().every(s => s.parentId === ZERO || ids.has(s.parentId));
    }, 15_000);

    const all = trace();
    const byId = new Map(all.map(s => [s.spanId, s]));
    // One root: the gateway's HTTP request; every other span's parent is in the trace.
    const roots = all.filter(s => s.parentId === ZERO);
    expect(roots.map(s => s.service)).toEqual(["api"]);
    for (const s of all.filter(x => x.parentId !== ZERO)) {
      expect(byId.has(s.parentId), `parent of ${s.service} ${s.name}`).toBe(true);
    }
    // Three processes (by the span's nodeID tag) and their services.
    const nodes = new Set(all.map(s => s.tags.nodeID));
    for (const name of ["gateway", "tokens", "catalog"]) {
      expect(nodes.has(cluster.nodeId(name)), `spans from ${name}`).toBe(true);
    }
    for (const service of ["api", "tokens", "catalog"]) {
      expect(
        all.some(s => s.service === service),
        service,
      ).toBe(true);
    }
    // Every span names the request as the client sent it.
    for (const s of all) expect(s.tags.requestID, `${s.service} ${s.name}`).toBe(requestId);

    // The catalog's handler hangs under the outbox publish, which hangs under tokens' action.
    const handler = channelSpan()!;
    const publish = byId.get(handler.parentId)!;
    expect(publish.name).toBe("outbox.publish");
    expect(publish.service).toBe("tokens");
    expect(publish.tags.nodeID).toBe(cluster.nodeId("tokens"));
    const writer = byId.get(publish.parentId)!;
    expect(writer.service).toBe("tokens");
    expect(writer.tags["span.type"]).toBe("action");
    expect(handler.tags.caller).toBe("tokens");
    // The gateway's span is an ancestor of the writer.
    let up: Received | undefined = writer;
    while (up && up.parentId !== ZERO) up = byId.get(up.parentId);
    expect(up?.service).toBe("api");

    // No password, JWT or JWT signature in anything the collector received (registrations,
    // logins, the transfer's bearer token).
    const raw = Buffer.concat(bodies);
    for (const [what, secret] of [
      ["password", "correct horse battery"],
      ["JWT", ann.token],
      ["JWT signature", ann.token.split(".")[2]],
      ["JWT payload", ann.token.split(".")[1]],
      ["JWT of the login", login.body.token],
    ]) {
      expect(raw.includes(Buffer.from(secret, "utf8")), what).toBe(false);
    }
  });
});
