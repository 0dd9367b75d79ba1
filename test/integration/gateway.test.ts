import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { registerUser, type ErrorBody, type HttpResult } from "../helpers/http";
import { startPlatform, usePlatform } from "../helpers/platform";

const password = "correct horse battery";

describe("gateway: errors, request ids, idempotency", () => {
  const p = usePlatform(["api", "users"], { settings: { api: { readyServices: ["users"] } } });

  it("answers an unknown route with 404 in the docs/api.md shape", async () => {
    for (const [method, path] of [
      ["GET", "/api/nothing-here"],
      ["DELETE", "/api/users/me"],
      ["GET", "/elsewhere"],
    ]) {
      const res = await p.client.request<ErrorBody>(method, path);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.error).toMatchObject({ type: "NOT_FOUND", message: "Not found" });
      expect(res.body.error.requestId).toBe(res.headers.get("x-request-id"));
    }
  });

  it("does not route to internal (non-published) actions", async () => {
    const res = await p.client.post<ErrorBody>("/api/users/resolveAccount", { account: "x" });
    expect(res.status).toBe(404);
  });

  it("takes X-Request-ID from the request and returns it; makes one when absent", async () => {
    const given = await p.client.get("/api/users/usr_unknown", {
      headers: { "x-request-id": "my-trace-42" },
    });
    expect(given.headers.get("x-request-id")).toBe("my-trace-42");
    expect((given.body as unknown as ErrorBody).error.requestId).toBe("my-trace-42");

    const made = await p.client.get("/health/live");
    expect(made.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("answers malformed JSON with 400", async () => {
    const res = await p.client.request<ErrorBody>("POST", "/api/auth/register", {
      rawBody: '{"email": "a@b.c",',
    });
    expect(res.status).toBe(400);
    expect(res.body.error.type).toBe("VALIDATION_ERROR");
    expect(res.body.error.data).toEqual([{ field: "body", message: "is not valid JSON" }]);
  });

  it("answers a body over 1 MB with 413", async () => {
    const big = JSON.stringify({
      email: "a@example.com",
      password,
      displayName: "x",
      bio: "y".repeat(1_100_000),
    });
    const res = await p.client.request<ErrorBody>("POST", "/api/auth/register", { rawBody: big });
    expect(res.status).toBe(413);
    expect(res.body.error.type).toBe("PAYLOAD_TOO_LARGE");
  });

  it("answers anything unexpected with 500 that says nothing but the request id", async () => {
    // A users node whose store fails the way a broken database does.
    const users = p.broker.getLocalService("users") as unknown as {
      stores: Record<string, { findOne: unknown }>;
    };
    const store = users.stores.users;
    const original = store.findOne;
    store.findOne = () =>
      Promise.reject(new Error("connection to db-7.internal:27017 refused, password=hunter2"));
    try {
      const res = await p.client.post<ErrorBody>(
        "/api/auth/login",
        { email: "someone@example.com", password },
        { headers: { "x-request-id": "boom-1" } },
      );
      expect(res.status).toBe(500);
      expect(res.body).toEqual({
        error: { type: "INTERNAL_ERROR", message: "Internal server error", requestId: "boom-1" },
      });
    } finally {
      store.findOne = original;
    }
  });

  describe("Idempotency-Key", () => {
    // Keys are kept for users only (anonymous ones: test/integration/gateway-input.test.ts).
    const address = "0x" + "ab".repeat(20);
    const challenge = (token: string, key: string, chainId = 1) =>
      p.client.post<{ nonce: string }>(
        "/api/users/me/wallets/challenge",
        { address, chainId },
        { token, headers: { "idempotency-key": key } },
      );

    it("replays the first response for the same key and body", async () => {
      const u = await registerUser(p.client, "idem");
      const key = `chal-${randomBytes(6).toString("hex")}`;
      const first = await challenge(u.token, key);
      const second = await challenge(u.token, key);
      expect(first.status).toBe(201);
      expect(second.status).toBe(201);
      expect(second.body).toEqual(first.body);
      expect(second.headers.get("idempotent-replayed")).toBe("true");

      // With another key, the same body is a new request: a new challenge.
      const third = await challenge(u.token, `${key}-2`);
      expect(third.status).toBe(201);
      expect(third.body.nonce).not.toBe(first.body.nonce);
    });

    it("refuses a key reused for a different request", async () => {
      const u = await registerUser(p.client, "idem");
      const key = `chal-${randomBytes(6).toString("hex")}`;
      expect((await challenge(u.token, key, 1)).status).toBe(201);
      const b = await challenge(u.token, key, 5);
      expect(b.status).toBe(409);
      expect((b.body as unknown as ErrorBody).error.type).toBe("CONFLICT");
    });

    it("scopes keys to the user: two users may use the same key", async () => {
      const [u1, u2] = await Promise.all([
        registerUser(p.client, "k1"),
        registerUser(p.client, "k2"),
      ]);
      const key = "same-key";
      const r1 = await p.client.post<{ user: { id: string } }>(
        "/api/auth/login",
        { email: u1.email, password },
        {
          headers: { "idempotency-key": key },
          token: u1.token,
        },
      );
      const r2 = await p.client.post<{ user: { id: string } }>(
        "/api/auth/login",
        { email: u2.email, password },
        {
          headers: { "idempotency-key": key },
          token: u2.token,
        },
      );
      expect(r1.body.user.id).toBe(u1.id);
      expect(r2.body.user.id).toBe(u2.id);
    });
  });
});

describe("gateway: rate limits", () => {
  it("limits login attempts per IP more strictly, with 429, RATE_LIMITED and Retry-After", async () => {
    const p = await startPlatform(["api", "users"], {
      settings: {
        // Windows are aligned to the clock: an hour-long one keeps the five attempts off a
        // boundary (a minute-long one split them once in a CI run: 401 ×4, then 429).
        api: {
          readyServices: ["users"],
          rateLimits: { loginMax: 3, max: 100, windowMs: 3_600_000 },
        },
      },
    });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        statuses.push(
          (await p.client.post("/api/auth/login", { email: "x@example.com", password })).status,
        );
      }
      expect(statuses).toEqual([401, 401, 401, 429, 429]);
      const res = await p.client.post<ErrorBody>("/api/auth/login", {
        email: "x@example.com",
        password,
      });
      expect(res.body.error.type).toBe("RATE_LIMITED");
      const retryAfter = Number(res.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(3600);
      // The general limit is separate: other routes still answer.
      expect((await p.client.get("/api/users/usr_x")).status).toBe(404);
    } finally {
      await p.stop();
    }
  });

  it.each<{ store: string; env: Record<string, string> }>([
    { store: "memory", env: {} },
    {
      store: "Redis",
      env: {
        REDIS_URL: process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379",
        NAMESPACE: `rl-${randomBytes(4).toString("hex")}`,
      },
    },
  ])("counts one client's requests to all /api routes together ($store)", async ({ env }) => {
    const p = await startPlatform(["api", "users"], {
      env,
      // An hour-long window: windows are aligned to the clock, this keeps off a boundary.
      settings: { api: { readyServices: ["users"], rateLimits: { max: 6, windowMs: 3_600_000 } } },
    });
    try {
      const u = await registerUser(p.client, "limited");
      // register was one (public); then public and private by turns, ten more.
      const paths = [`/api/users/${u.id}`, "/api/users/me"];
      const answers: Array<HttpResult<ErrorBody>> = [];
      for (let i = 0; i < 10; i++) {
        answers.push(await p.client.get<ErrorBody>(paths[i % 2], { token: u.token }));
      }
      expect(answers.map(r => r.status)).toEqual([...Array(5).fill(200), ...Array(5).fill(429)]);
      expect(answers.map(r => r.headers.get("x-rate-limit-limit"))).toEqual(Array(10).fill("6"));
      expect(answers.map(r => r.headers.get("x-rate-limit-remaining"))).toEqual([
        "4",
        "3",
        "2",
        "1",
        "0",
        ...Array(5).fill("0"),
      ]);
      const refused = answers[5];
      expect(refused.body.error.type).toBe("RATE_LIMITED");
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      // The docs and login, under /api too, count in the same and are refused.
      expect((await p.client.get("/api/openapi.json")).status).toBe(429);
      expect((await p.client.post("/api/auth/login", { email: u.email, password })).status).toBe(
        429,
      );
      // Not the health routes.
      expect((await p.client.get("/health/live")).status).toBe(200);
    } finally {
      await p.stop();
    }
  });

  it("shares one count among gateways through Redis when REDIS_URL is set", async () => {
    // Env, since the broker config reads them too: REDIS_URL (the cacher), NAMESPACE.
    const env = {
      REDIS_URL: process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379",
      NAMESPACE: `rl-${randomBytes(4).toString("hex")}`,
    };
    const settings = {
      // Windows are aligned to the clock: an hour-long one keeps the test off a boundary.
      api: { readyServices: ["users"], rateLimits: { loginMax: 4, windowMs: 3_600_000 } },
    };
    const a = await startPlatform(["api", "users"], { env, settings });
    const b = await startPlatform(["api", "users"], { env, settings });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const gw = i % 2 === 0 ? a : b;
        statuses.push(
          (await gw.client.post("/api/auth/login", { email: "y@example.com", password })).status,
        );
      }
      // Four attempts in all pass, wherever they land; the fifth and sixth are refused.
      expect(statuses).toEqual([401, 401, 401, 401, 429, 429]);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
