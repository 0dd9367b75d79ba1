import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import { Wallet } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { waitUntil } from "../helpers/cluster";
import { registerUser, startReceiver } from "../helpers/http";
import { uniqueSymbol } from "../helpers/tokens";
import { traceIdHex } from "../../lib/observability/trace-tags";
import type { Saga } from "../../lib/sagas/saga-log";

/**
 * Secrets stay out of traces: the platform with JAEGER_ENDPOINT pointing at a stand-in
 * Jaeger collector on loopback, which keeps the raw bytes the exporter POSTs (Thrift over
 * HTTP, strings as UTF-8). Passwords, JWTs and signatures must not be among them.
 */

describe("traces sent to Jaeger", () => {
  const received: Buffer[] = [];
  let collector: Server;
  let p: Platform;
  const all = () => Buffer.concat(received);
  const has = (text: string) => all().includes(Buffer.from(text, "utf8"));

  beforeAll(async () => {
    let url: string;
    ({ server: collector, url } = await startReceiver((got, res) => {
      received.push(got.raw);
      res.writeHead(202).end();
    }));
    p = await startPlatform(["api", "users"], {
      env: { JAEGER_ENDPOINT: `${url}/api/traces` },
      settings: { api: { readyServices: ["users"], rateLimits: { max: 0, loginMax: 0 } } },
    });
  });
  afterAll(async () => {
    await p?.stop();
    await new Promise(resolve => collector.close(resolve));
  });

  it("records the calls, never a password, a JWT or a signature", async () => {
    const password = `pw-${randomBytes(12).toString("hex")}`;
    const wrong = `wrong-${randomBytes(12).toString("hex")}`;
    const tooShort = `s${randomBytes(2).toString("hex")}`;
    const email = `traced-${randomBytes(4).toString("hex")}@example.com`;

    const reg = await p.client.post<{ token: string; user: { id: string } }>("/api/auth/register", {
      email,
      password,
      displayName: "Traced",
    });
    expect(reg.status).toBe(201);
    const jwt = reg.body.token;
    expect((await p.client.post("/api/auth/login", { email, password })).status).toBe(200);
    expect((await p.client.post("/api/auth/login", { email, password: wrong })).status).toBe(401);
    // A validation error keeps the value it refused: the span must not.
    const short = await p.client.post("/api/auth/register", {
      email: `b-${email}`,
      password: tooShort,
      displayName: "B",
    });
    expect(short.status).toBe(400);

    const wallet = Wallet.createRandom();
    const challenge = await p.client.post<{ message: string }>(
      "/api/users/me/wallets/challenge",
      { address: wallet.address, chainId: 1 },
      { token: jwt },
    );
    expect(challenge.status).toBe(201);
    const signature = await wallet.signMessage(challenge.body.message);
    const linked = await p.client.post(
      "/api/users/me/wallets",
      { message: challenge.body.message, signature },
      { token: jwt },
    );
    expect(linked.status).toBe(201);

    // Spans did arrive: the exporter flushes every second.
    await waitUntil(() => has("users.linkWallet") && has("users.login"), 10_000);
    expect(has(email)).toBe(true);

    for (const [what, secret] of [
      ["password", password],
      ["wrong password", wrong],
      ["refused password", tooShort],
      ["JWT", jwt],
      ["JWT signature part", jwt.split(".")[2]],
      ["wallet signature", signature],
      ["wallet signature without 0x", signature.slice(2)],
    ]) {
      expect(has(secret), what).toBe(false);
    }
  });
});

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: Array<{ key: string; value: { stringValue?: string; boolValue?: boolean } }>;
}

/**
 * Saga steps in traces, through the OTLP exporter (OTLP_ENDPOINT, a stand-in collector taking
 * OTLP/HTTP JSON): a launch's steps are spans of the saga's trace (its steps' request id is
 * the saga id), each step's call hangs under its step, and the outbox's publishes and the
 * read models' handlers of the request's events are in the request's trace.
 */
/** The spans of one OTLP/HTTP JSON export. */
const otlpSpans = (body: string): OtlpSpan[] =>
  (
    JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> }
  ).resourceSpans.flatMap(r => r.scopeSpans.flatMap(x => x.spans));

describe("saga steps and outbox publishes in traces (OTLP)", () => {
  let p: Platform;
  let collector: Server;
  const spans: OtlpSpan[] = [];

  beforeAll(async () => {
    let url: string;
    ({ server: collector, url } = await startReceiver(({ body }, res) => {
      spans.push(...otlpSpans(body));
      res.writeHead(200).end("{}");
    }));
    p = await startPlatform(["api", "users", "tokens", "dex", "marketing", "sagas", "catalog"], {
      env: {
        OTLP_ENDPOINT: url,
        READY_SERVICES: "users,tokens,dex,marketing,sagas",
        RATE_LIMIT_MAX: "0",
      },
    });
  });
  afterAll(async () => {
    await p?.stop();
    await new Promise(resolve => collector.close(resolve));
  });

  const attr = (s: OtlpSpan, key: string) => {
    const v = s.attributes.find(a => a.key === key)?.value;
    return v?.stringValue ?? v?.boolValue;
  };

  it("has a span per step with the step's call under it, and the request's publishes", async () => {
    const ann = await registerUser(p.client, "launcher");
    const res = await p.client.post<Saga>(
      "/api/launches",
      {
        token: { name: "Traced", symbol: uniqueSymbol("L"), decimals: 0, initialSupply: "1000" },
        liquidity: { amount: "100" },
        marketing: { budget: "10" },
      },
      { token: ann.token },
    );
    // 202 when the saga is still running: its steps are traced either way.
    expect([201, 202]).toContain(res.status);
    const requestId = res.headers.get("x-request-id")!;
    const sagaTrace = traceIdHex(res.body.id);

    const steps = () =>
      spans.filter(s => s.traceId === sagaTrace && s.name.startsWith("saga step"));
    await waitUntil(() => steps().length >= 3, 10_000);
    expect(steps().map(s => s.name)).toEqual(
      expect.arrayContaining([
        "saga step 'createToken'",
        "saga step 'addLiquidity'",
        "saga step 'activateMarketing'",
      ]),
    );
    for (const step of steps()) {
      expect(attr(step, "sagaId")).toBe(res.body.id);
      // The step's call: an action span whose parent is the step.
      await waitUntil(() => spans.some(s => s.parentSpanId === step.spanId), 5000);
      const call = spans.find(s => s.parentSpanId === step.spanId)!;
      expect(call.name).toBe(`action '${attr(step, "action") as string}'`);
      expect(call.traceId).toBe(sagaTrace);
    }

    // The launch request's own events (the saga's end, written by sagas) are published in the
    // request's trace, and the catalog's handler of them hangs under the publish.
    const requestTrace = traceIdHex(requestId);
    await waitUntil(
      () => spans.some(s => s.traceId === requestTrace && s.name === "outbox.publish"),
      10_000,
    );
    const publishes = spans.filter(s => s.traceId === requestTrace && s.name === "outbox.publish");
    for (const pub of publishes) {
      expect(spans.some(s => s.spanId === pub.parentSpanId && s.traceId === requestTrace)).toBe(
        true,
      );
    }
  });
});
