import type { AddressInfo } from "node:net";
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { Wallet } from "ethers";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ApiClient, registerUser, type ErrorBody, type Registered } from "../helpers/http";
import { withSettings } from "../helpers/platform";
import { brokerWithLogs } from "../helpers/logs";
import { createToken } from "../helpers/tokens";

/**
 * API keys through the gateway (docs/api.md "API keys"): api, users and tokens in one
 * broker with the project's config, its logger at debug writing to a stream the test
 * reads and its spans (with the config's redacting tags) sent to a service of the test,
 * so that the last test can look for the keys in everything the process logged or traced.
 * Each key is limited to LIMIT requests a minute: tests that send more make keys of their own.
 */

const LIMIT = 12;

interface Key {
  id: string;
  name: string;
  scopes: string[];
  prefix: string;
  key: string;
  createdAt: string;
}

describe("API keys", () => {
  let raw = "";
  const spans: unknown[] = [];
  let broker: ServiceBroker;
  let client: ApiClient;
  let ann: Registered;
  let bob: Registered;
  const keys: string[] = [];

  beforeAll(async () => {
    broker = await brokerWithLogs({
      nodeID: `keys-${process.pid}`,
      level: "debug",
      write: chunk => void (raw += chunk),
      options: config => ({
        tracing: {
          ...(config.tracing as object),
          enabled: true,
          exporter: [{ type: "Event", options: { interval: 0 } }],
        },
      }),
    });
    const given: Record<string, object> = {
      api: {
        port: 0,
        ip: "127.0.0.1",
        readyServices: ["users", "tokens"],
        rateLimits: { max: 0, loginMax: 0 },
        apiKeys: { rateLimit: LIMIT, windowMs: 60_000, cacheTtlMs: 500, cacheMaxEntries: 100 },
      },
      users: { apiKeys: { maxPerUser: 50 } },
      tokens: {},
    };
    for (const [name, settings] of Object.entries(given)) {
      const mod = (await import(`../../services/${name}.service.ts`)) as { default: ServiceSchema };
      broker.createService(withSettings(mod.default, settings));
    }
    broker.createService({
      name: "span-sink",
      events: {
        "$tracing.spans"(ctx: { params: unknown[] }) {
          spans.push(...ctx.params);
        },
      },
    });
    await broker.start();
    const api = broker.getLocalService("api") as unknown as { server: { address(): AddressInfo } };
    client = new ApiClient(`http://127.0.0.1:${api.server.address().port}`);
    [ann, bob] = await Promise.all([registerUser(client, "ann"), registerUser(client, "bob")]);
  });
  afterAll(() => broker?.stop());

  const makeKey = async (user: Registered, scopes: string[], name = "server") => {
    const res = await client.post<Key>("/api/keys", { name, scopes }, { token: user.token });
    expect(res.status, res.text).toBe(201);
    keys.push(res.body.key);
    return res.body;
  };

  it("shows a new key once; lists show its prefix only", async () => {
    const made = await makeKey(ann, ["transfer", "read"], "payouts");
    expect(made.key).toMatch(/^mm_[A-Za-z0-9_-]{43}$/);
    expect(made).toMatchObject({ name: "payouts", scopes: ["read", "transfer"] });
    expect(made.prefix).toBe(made.key.slice(0, 12));

    const list = await client.get<{ rows: Key[]; total: number }>("/api/keys", {
      token: ann.token,
    });
    expect(list.status).toBe(200);
    const row = list.body.rows.find(r => r.id === made.id);
    expect(row).toEqual({
      id: made.id,
      name: "payouts",
      scopes: ["read", "transfer"],
      prefix: made.prefix,
      createdAt: made.createdAt,
    });
    expect(list.text).not.toContain(made.key);
    // An Idempotency-Key is not honoured here: keeping the answer would keep the key.
    const headers = { "idempotency-key": "make-key-1" };
    const twice = [
      await client.post<Key>(
        "/api/keys",
        { name: "k", scopes: ["read"] },
        { token: ann.token, headers },
      ),
      await client.post<Key>(
        "/api/keys",
        { name: "k", scopes: ["read"] },
        { token: ann.token, headers },
      ),
    ];
    expect(twice.map(r => r.status)).toEqual([201, 201]);
    expect(twice[1].headers.get("idempotent-replayed")).toBeNull();
    expect(twice[0].body.key).not.toBe(twice[1].body.key);
    keys.push(...twice.map(r => r.body.key));
    // Nobody else sees it.
    const theirs = await client.get<{ rows: Key[] }>("/api/keys", { token: bob.token });
    expect(theirs.body.rows.map(r => r.id)).not.toContain(made.id);
  });

  it("refuses bad bodies, naming the field", async () => {
    const bad = [
      { name: "", scopes: ["read"] },
      { name: "x".repeat(65), scopes: ["read"] },
      { name: "k", scopes: [] },
      { name: "k", scopes: ["admin"] },
      { name: "k", scopes: ["read", "read"] },
    ];
    for (const body of bad) {
      const res = await client.post<ErrorBody>("/api/keys", body, { token: ann.token });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.data?.map(d => d.field)[0]).toMatch(/^(name|scopes)/);
    }
  });

  it("acts as its owner within its scopes", async () => {
    const token = await createToken(client, ann.token, { initialSupply: "1000" });
    const { key } = await makeKey(ann, ["read", "transfer"]);

    const me = await client.get<{ id: string }>("/api/users/me", { token: key });
    expect(me.status).toBe(200);
    expect(me.body.id).toBe(ann.id);
    const balance = await client.get<{ amount: string }>(
      `/api/tokens/${token.id}/balances/${ann.id}`,
      { token: key },
    );
    expect(balance.status).toBe(200);
    expect(balance.body.amount).toBe("1000");

    const sent = await client.post<{ from: string; amount: string }>(
      `/api/tokens/${token.id}/transfers`,
      { to: bob.id, amount: "250" },
      { token: key, headers: { "idempotency-key": "pay-1" } },
    );
    expect(sent.status, sent.text).toBe(201);
    expect(sent.body).toMatchObject({ from: ann.id, amount: "250" });
    const after = await client.get<{ amount: string }>(
      `/api/tokens/${token.id}/balances/${bob.id}`,
      { token: key },
    );
    expect(after.body.amount).toBe("250");
  });

  it("answers 403 naming the scope a key lacks", async () => {
    const token = await createToken(client, ann.token, { initialSupply: "1000" });
    const { key } = await makeKey(ann, ["read"]);
    const res = await client.post<ErrorBody & { error: { data: { scope: string } } }>(
      `/api/tokens/${token.id}/transfers`,
      { to: bob.id, amount: "1" },
      { token: key },
    );
    expect(res.status).toBe(403);
    expect(res.body.error.type).toBe("FORBIDDEN");
    expect(res.body.error.message).toContain("transfer");
    expect(res.body.error.data).toEqual({ scope: "transfer" });
    // Nor may it make a token (mint), nor list (market).
    const mint = await client.post<ErrorBody>(
      "/api/tokens",
      { name: "No", symbol: "NOPE1", decimals: 0, initialSupply: "1" },
      { token: key },
    );
    expect(mint.status).toBe(403);
    expect(mint.body.error.message).toContain("mint");
    // Nothing moved.
    const bal = await client.get<{ amount: string }>(`/api/tokens/${token.id}/balances/${ann.id}`, {
      token: key,
    });
    expect(bal.body.amount).toBe("1000");
  });

  it("cannot manage keys, wallets, the profile or log in, whatever its scopes", async () => {
    const { key, id } = await makeKey(ann, ["read", "transfer", "mint", "market", "webhooks"]);
    const wallet = Wallet.createRandom();
    const tries = [
      client.post("/api/keys", { name: "child", scopes: ["read"] }, { token: key }),
      client.get("/api/keys", { token: key }),
      client.delete(`/api/keys/${id}`, { token: key }),
      client.patch("/api/users/me", { displayName: "Owned" }, { token: key }),
      client.post(
        "/api/users/me/wallets/challenge",
        { address: wallet.address, chainId: 1 },
        { token: key },
      ),
      client.delete(`/api/users/me/wallets/${wallet.address}`, { token: key }),
      client.post("/api/auth/login", { email: ann.email, password: "x" }, { token: key }),
    ];
    for (const res of await Promise.all(tries)) {
      expect(res.status, res.text).toBe(403);
      expect((res.body as unknown as ErrorBody).error.type).toBe("FORBIDDEN");
    }
    // Still there, and still the owner's profile.
    const list = await client.get<{ rows: Key[] }>("/api/keys", { token: ann.token });
    expect(list.body.rows.map(r => r.id)).toContain(id);
    const me = await client.get<{ displayName: string }>("/api/users/me", { token: ann.token });
    expect(me.body.displayName).toBe("ann");
  });

  it("is refused once deleted (401); another user's key is 404 to delete", async () => {
    const { key, id } = await makeKey(ann, ["read"]);
    expect((await client.get("/api/users/me", { token: key })).status).toBe(200);
    const foreign = await client.delete<ErrorBody>(`/api/keys/${id}`, { token: bob.token });
    expect(foreign.status).toBe(404);
    expect((await client.get("/api/users/me", { token: key })).status).toBe(200);

    const gone = await client.delete<Key>(`/api/keys/${id}`, { token: ann.token });
    expect(gone.status).toBe(200);
    expect(gone.body).toMatchObject({ id, scopes: ["read"] });
    expect(gone.text).not.toContain(key);
    const after = await client.get<ErrorBody>("/api/users/me", { token: key });
    expect(after.status).toBe(401);
    expect(after.body.error.type).toBe("UNAUTHORIZED");
    expect((await client.delete(`/api/keys/${id}`, { token: ann.token })).status).toBe(404);
    // A key nobody made is 401 as well.
    const forged = `mm_${"A".repeat(43)}`;
    expect((await client.get("/api/users/me", { token: forged })).status).toBe(401);
  });

  it("counts each key's requests down in X-RateLimit headers; 429 beyond", async () => {
    const [one, two] = [await makeKey(ann, ["read"]), await makeKey(ann, ["read"])];
    const remaining: number[] = [];
    let reset = 0;
    for (let i = 0; i < LIMIT; i++) {
      const res = await client.get("/api/users/me", { token: one.key });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-ratelimit-limit")).toBe(String(LIMIT));
      remaining.push(Number(res.headers.get("x-ratelimit-remaining")));
      reset = Number(res.headers.get("x-ratelimit-reset"));
    }
    expect(remaining).toEqual(Array.from({ length: LIMIT }, (_, i) => LIMIT - 1 - i));
    // Epoch seconds, within the minute's window.
    expect(reset * 1000).toBeGreaterThan(Date.now());
    expect(reset * 1000).toBeLessThanOrEqual(Date.now() + 61_000);

    const over = await client.get<ErrorBody>("/api/users/me", { token: one.key });
    expect(over.status).toBe(429);
    expect(over.body.error.type).toBe("RATE_LIMITED");
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(over.headers.get("x-ratelimit-remaining")).toBe("0");
    // Per key: the other key of the same owner, and the owner's token, are untouched.
    const other = await client.get("/api/users/me", { token: two.key });
    expect(other.status).toBe(200);
    expect(other.headers.get("x-ratelimit-remaining")).toBe(String(LIMIT - 1));
    const user = await client.get("/api/users/me", { token: ann.token });
    expect(user.status).toBe(200);
    expect(user.headers.get("x-ratelimit-limit")).toBeNull();
  });

  it("keeps 50 keys per user at most (422)", async () => {
    const carl = await registerUser(client, "carl");
    const made = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        client.post<Key>("/api/keys", { name: `k${i}`, scopes: ["read"] }, { token: carl.token }),
      ),
    );
    expect(made.map(r => r.status)).toEqual(Array(50).fill(201));
    keys.push(...made.map(r => r.body.key));
    const more = await client.post<ErrorBody>(
      "/api/keys",
      { name: "one too many", scopes: ["read"] },
      { token: carl.token },
    );
    expect(more.status).toBe(422);
    expect(more.body.error.type).toBe("TOO_MANY_API_KEYS");
    // Deleting one frees its place.
    await client.delete(`/api/keys/${made[7].body.id}`, { token: carl.token });
    const again = await client.post<Key>(
      "/api/keys",
      { name: "again", scopes: ["read"] },
      { token: carl.token },
    );
    expect(again.status).toBe(201);
    keys.push(again.body.key);
    const list = await client.get<{ total: number }>("/api/keys?limit=5", { token: carl.token });
    expect(list.body.total).toBe(50);
  });

  it("writes no key to any log line or span", async () => {
    expect(keys.length).toBeGreaterThan(50);
    // Spans are sent as each finishes; the log as each line is written.
    await vi.waitFor(() => expect(spans.length).toBeGreaterThan(20));
    const traced = JSON.stringify(spans);
    expect(traced).toContain("users.createKey");
    // The gateway's question to users is in the request's trace, its hash redacted.
    const resolve = spans.find(s => JSON.stringify(s).includes("'users.resolveKey'")) as {
      tags: { requestID?: string; params: unknown };
    };
    expect(resolve.tags.params).toEqual({ keyHash: "[redacted]" });
    expect(resolve.tags.requestID).toBeTruthy();
    expect(raw).toContain("API key created");
    for (const key of keys) {
      // The whole key, and what follows its listed prefix (the secret part).
      for (const text of [key, key.slice(12)]) {
        expect(raw).not.toContain(text);
        expect(traced).not.toContain(text);
      }
    }
    // Nor their hashes, which resolve keys.
    const { hashApiKey } = await import("../../lib/users/api-keys");
    for (const key of keys.slice(0, 5)) {
      expect(raw).not.toContain(hashApiKey(key));
      expect(traced).not.toContain(hashApiKey(key));
    }
  });
});
