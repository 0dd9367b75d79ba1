import { randomBytes } from "node:crypto";
import net from "node:net";
import Redis from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerUser, type ErrorBody } from "../helpers/http";
import { startPlatform, type Platform } from "../helpers/platform";

/**
 * Abuse the gateway must take (docs/api.md "Rate limits"): password guessing spread over
 * addresses, forged X-Forwarded-For, slow clients, and a Redis that refuses writes.
 */

const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const password = "correct horse battery";
const ns = () => `abuse-${randomBytes(4).toString("hex")}`;

const login = (p: Platform, email: string, pass: string, from?: string) =>
  p.client.post<ErrorBody>(
    "/api/auth/login",
    { email, password: pass },
    { headers: from ? { "x-forwarded-for": from } : {} },
  );

describe("login throttling per account, on top of per address", () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform(["api", "users"], {
      settings: {
        // One proxy of ours in front: each attempt below comes from another client address.
        api: { readyServices: ["users"], trustProxy: 1, rateLimits: { loginMax: 1000 } },
      },
    });
  });
  afterAll(() => p.stop());

  it("refuses the failing address an account's 6th attempt; a fresh address gets in with the right password", async () => {
    const u = await registerUser(p.client, "victim");
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++)
      statuses.push((await login(p, u.email, "wrong", "10.1.0.1")).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401]);
    // The guesser's address, whatever the email's case: refused, right password and all.
    const refused = await login(p, ` ${u.email.toUpperCase()} `, password, "10.1.0.1");
    expect(refused.status).toBe(429);
    expect(refused.body.error.type).toBe("RATE_LIMITED");
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(15 * 60);
    // The owner, from an address that has not been failing: not locked out.
    const owner = await login(p, u.email, password, "10.1.0.99");
    expect(owner.status).toBe(200);
    // Another account, from the guesser's address, is not affected either.
    const other = await registerUser(p.client, "other");
    expect((await login(p, other.email, password, "10.1.0.1")).status).toBe(200);
    // And the guesser stays refused for the victim.
    expect((await login(p, u.email, "wrong", "10.1.0.1")).status).toBe(429);
  });

  it("forgets an account's failures when it logs in", async () => {
    const u = await registerUser(p.client, "forgetful");
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) expect((await login(p, u.email, "wrong")).status).toBe(401);
      expect((await login(p, u.email, password)).status).toBe(200);
    }
  });
});

describe("login throttling: the account's ceiling against a guesser on many addresses", () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform(["api", "users"], {
      settings: {
        api: {
          readyServices: ["users"],
          trustProxy: 1,
          rateLimits: { loginMax: 1000 },
          loginThrottle: { accountMaxFailures: 4 },
        },
      },
    });
  });
  afterAll(() => p.stop());

  it("past it refuses every address that has failed for the account, never one that has not", async () => {
    const u = await registerUser(p.client, "spread");
    const statuses: number[] = [];
    for (const ip of ["10.3.0.1", "10.3.0.2", "10.3.0.1", "10.3.0.2"]) {
      statuses.push((await login(p, u.email, "wrong", ip)).status);
    }
    expect(statuses).toEqual([401, 401, 401, 401]);
    // Four failures: an address that has failed is refused, under its own five.
    expect((await login(p, u.email, "wrong", "10.3.0.1")).status).toBe(429);
    expect((await login(p, u.email, password, "10.3.0.2")).status).toBe(429);
    // A new address gets one guess, then it has failed too.
    expect((await login(p, u.email, "wrong", "10.3.0.3")).status).toBe(401);
    expect((await login(p, u.email, "wrong", "10.3.0.3")).status).toBe(429);
    // The owner, from an address of their own, gets in.
    expect((await login(p, u.email, password, "10.3.0.99")).status).toBe(200);
  });
});

describe("login throttling kept in Redis when REDIS_URL is set", () => {
  it("counts an account's failures across gateways", async () => {
    const env = { REDIS_URL, NAMESPACE: ns() };
    const settings = {
      api: { readyServices: ["users"], trustProxy: 1, rateLimits: { loginMax: 1000 } },
    };
    // Two gateways, each with a users service of its own (the account exists in a only).
    const a = await startPlatform(["api", "users"], { env, settings });
    const b = await startPlatform(["api", "users"], { env, settings });
    try {
      const u = await registerUser(a.client, "shared");
      const statuses: number[] = [];
      for (let i = 0; i < 7; i++) {
        const gw = i % 2 === 0 ? a : b;
        statuses.push((await login(gw, u.email, "wrong", "10.2.0.1")).status);
      }
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429]);
      // Refused on both for that address; the owner elsewhere gets in (on a, which has the account).
      expect((await login(a, u.email, password, "10.2.0.1")).status).toBe(429);
      expect((await login(b, u.email, password, "10.2.0.1")).status).toBe(429);
      expect((await login(a, u.email, password, "10.2.0.2")).status).toBe(200);
    } finally {
      await b.stop();
      await a.stop();
    }
  });
});

describe("TRUST_PROXY=<hops>", () => {
  const start = async (trustProxy: number) => {
    const p = await startPlatform(["api", "users"], {
      settings: { api: { readyServices: ["users"], trustProxy, rateLimits: { loginMax: 2 } } },
    });
    // The limit's windows are whole minutes: three logins must not straddle two of them.
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 5000) await new Promise(resolve => setTimeout(resolve, left + 50));
    return p;
  };

  it("takes the client address that many hops from the right of X-Forwarded-For", async () => {
    const p = await start(1);
    try {
      // The client writes what it likes on the left; our proxy appends what it saw.
      const from = (claim: string) => login(p, "nobody@example.com", "x", `${claim}, 203.0.113.7`);
      expect((await from("1.1.1.1")).status).toBe(401);
      expect((await from("2.2.2.2")).status).toBe(401);
      expect((await from("3.3.3.3")).status).toBe(429);
      // Another client behind the same proxy has its own budget.
      expect((await login(p, "nobody@example.com", "x", "1.1.1.1, 203.0.113.8")).status).toBe(401);
    } finally {
      await p.stop();
    }
  });

  it("with two hops, the second from the right; with none, the socket's address", async () => {
    const two = await start(2);
    try {
      const via = (client: string, cdn: string) =>
        login(two, "nobody@example.com", "x", `forged, ${client}, ${cdn}`);
      expect((await via("198.51.100.1", "192.0.2.1")).status).toBe(401);
      expect((await via("198.51.100.1", "192.0.2.2")).status).toBe(401);
      expect((await via("198.51.100.1", "192.0.2.3")).status).toBe(429);
    } finally {
      await two.stop();
    }
    const none = await start(0);
    try {
      const statuses: number[] = [];
      for (const ip of ["1.1.1.1", "2.2.2.2", "3.3.3.3"]) {
        statuses.push((await login(none, "nobody@example.com", "x", ip)).status);
      }
      expect(statuses).toEqual([401, 401, 429]);
    } finally {
      await none.stop();
    }
  });
});

describe("HTTP timeouts", () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform(["api"], {
      settings: { api: { readyServices: [], headersTimeout: 300, requestTimeout: 600 } },
    });
  });
  afterAll(() => p.stop());

  /** Opens a connection, writes `text`, and resolves with what the server sent before closing it. */
  function slowClient(text: string, ms: number): Promise<{ answer: string; closedMs: number }> {
    const { port } = new URL(p.baseUrl);
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const socket = net.connect(Number(port), "127.0.0.1", () => socket.write(text));
      let answer = "";
      socket.on("data", d => (answer += d.toString()));
      socket.on("close", () => resolve({ answer, closedMs: Date.now() - started }));
      socket.on("error", reject);
      setTimeout(() => {
        socket.destroy();
        resolve({ answer, closedMs: Infinity });
      }, ms);
    });
  }

  it("answers 408 and closes a connection whose headers do not arrive in time", async () => {
    const { answer, closedMs } = await slowClient("GET /health/live HTTP/1.1\r\nHost: x\r\n", 8000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(closedMs).toBeLessThan(8000);
  });

  it("answers 408 to a request whose body does not arrive in time", async () => {
    const head =
      "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
      "Content-Length: 100\r\n\r\n{";
    const { answer, closedMs } = await slowClient(head, 8000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(closedMs).toBeLessThan(8000);
  });
});

describe("a Redis that refuses writes", () => {
  const user = `mm-ro-${randomBytes(4).toString("hex")}`;
  const pass = randomBytes(12).toString("hex");
  let admin: Redis;
  let p: Platform;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  beforeAll(async () => {
    admin = new Redis(REDIS_URL);
    // A real Redis answering NOPERM to every write of this user: reads work, writes fail.
    await admin.call("ACL", "SETUSER", user, "on", `>${pass}`, "~*", "&*", "+@all", "-@write");
    const url = new URL(REDIS_URL);
    url.username = user;
    url.password = pass;
    process.on("unhandledRejection", onUnhandled);
    p = await startPlatform(["api", "users"], {
      env: { REDIS_URL: url.toString(), NAMESPACE: ns() },
      settings: { api: { readyServices: ["users"], rateLimits: { max: 0, loginMax: 0 } } },
    });
  });
  afterAll(async () => {
    await p.stop();
    process.off("unhandledRejection", onUnhandled);
    await admin.call("ACL", "DELUSER", user);
    await admin.quit();
  });

  it("logs the writes that fail and answers as if they had not been tried", async () => {
    const u = await registerUser(p.client, "ro");
    const headers = { "idempotency-key": `ro-${randomBytes(4).toString("hex")}` };
    const address = `0x${"cd".repeat(20)}`;
    const challenge = await p.client.post(
      "/api/users/me/wallets/challenge",
      { address, chainId: 1 },
      { token: u.token, headers },
    );
    expect(challenge.status).toBe(201);
    const bad = await p.client.post(
      "/api/users/me/wallets/challenge",
      { address: "nope", chainId: 1 },
      { token: u.token, headers: { "idempotency-key": "ro-bad" } },
    );
    expect(bad.status).toBe(400);
    // users.get is cached: the cacher's write is refused too.
    expect((await p.client.get(`/api/users/${u.id}`)).status).toBe(200);
    expect((await p.client.get(`/api/users/${u.id}`)).status).toBe(200);
    await new Promise(r => setTimeout(r, 300));
    expect(unhandled).toEqual([]);
  });
});
