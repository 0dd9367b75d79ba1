import type { ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import ApiService from "../../../services/api.service";
import { ApiKeyGate, type ApiKeySettings } from "../../../lib/gateway/api-keys";
import {
  KEY_ROUTE_SCOPES,
  LOGIN_ROUTES,
  PRIVATE_ROUTES,
  PUBLIC_ROUTES,
  keyScopeOf,
} from "../../../lib/gateway/api-routes";
import { MemoryAttemptCounter } from "../../../lib/gateway/rate-limit";
import { hashApiKey, type ApiKeyOwner } from "../../../lib/users/api-keys";

const settings: ApiKeySettings = {
  rateLimit: 3,
  windowMs: 60_000,
  cacheTtlMs: 100,
  cacheMaxEntries: 10,
};
const KEY = `mm_${"k".repeat(43)}`;
const OWNER: ApiKeyOwner = { userId: "usr_1", keyId: "key_1", scopes: ["read"] };

/** A response that keeps the headers set on it. */
function fakeRes() {
  const headers: Record<string, string> = {};
  const res = { setHeader: (k: string, v: string) => (headers[k] = v) };
  return { res: res as unknown as ServerResponse, headers };
}

/** A gate over a stand-in for users.resolveKey that counts its calls. */
function gate(answer: () => Promise<ApiKeyOwner | null>, opts: Partial<ApiKeySettings> = {}) {
  const asked: string[] = [];
  const g = new ApiKeyGate({ ...settings, ...opts }, new MemoryAttemptCounter(60_000), hash => {
    asked.push(hash);
    return answer();
  });
  return { g, asked };
}

describe("the scope table of API keys", () => {
  it("names every aliased route of the gateway's authenticated routes, and nothing else", () => {
    const routes = (ApiService.settings?.routes ?? []) as Array<{
      name?: string;
      authentication?: boolean;
      aliases?: Record<string, unknown>;
    }>;
    // The live stream's route checks a key's scope itself (mixins/live-events.mixin.ts).
    const aliased = routes
      .filter(r => r.authentication && r.name !== "events")
      .flatMap(r => Object.keys(r.aliases ?? {}))
      .map(k => k.trim());
    expect(aliased.length).toBeGreaterThan(40);
    const missing = aliased.filter(
      k => KEY_ROUTE_SCOPES[k] === undefined && !k.split(" ")[1].startsWith("webhooks"),
    );
    expect(missing).toEqual([]);
    const tables = Object.keys({ ...PRIVATE_ROUTES, ...PUBLIC_ROUTES, ...LOGIN_ROUTES });
    expect(Object.keys(KEY_ROUTE_SCOPES).filter(k => !tables.includes(k))).toEqual([]);
  });

  it("closes keys, wallets, the profile and login to keys; reads need read", () => {
    for (const r of [
      "POST keys",
      "GET keys",
      "DELETE keys/:id",
      "PATCH users/me",
      "POST users/me/wallets",
      "POST auth/login",
      "GET something/new",
    ]) {
      expect(keyScopeOf(r), r).toBeNull();
    }
    expect(keyScopeOf("GET tokens/:id")).toBe("read");
    expect(keyScopeOf("POST tokens/:id/transfers-from")).toBe("transfer");
    expect(keyScopeOf("POST collections/:id/nfts")).toBe("mint");
    expect(keyScopeOf("POST market/listings/:id/buy")).toBe("market");
    expect(keyScopeOf("GET webhooks")).toBe("webhooks");
    expect(keyScopeOf("DELETE webhooks/:id")).toBe("webhooks");
    expect(keyScopeOf("GET webhooksx")).toBeNull();
  });
});

describe("ApiKeyGate", () => {
  it("asks users by the key's hash, once for many requests, and keeps the answer briefly", async () => {
    const { g, asked } = gate(async () => OWNER, { rateLimit: 0 });
    const users = await Promise.all([1, 2, 3].map(() => g.authenticate(KEY, fakeRes().res)));
    expect(users[0]).toEqual({ id: "usr_1", keyId: "key_1", scopes: ["read"] });
    expect(asked).toEqual([hashApiKey(KEY)]);
    await g.authenticate(KEY, fakeRes().res);
    expect(asked).toHaveLength(1);
    await new Promise(r => setTimeout(r, 120));
    await g.authenticate(KEY, fakeRes().res);
    expect(asked).toHaveLength(2);
  });

  it("refuses a key users does not know (401), and keeps that answer briefly too", async () => {
    const { g, asked } = gate(async () => null);
    await expect(g.authenticate(KEY, fakeRes().res)).rejects.toMatchObject({ code: 401 });
    await expect(g.authenticate(KEY, fakeRes().res)).rejects.toMatchObject({ code: 401 });
    expect(asked).toHaveLength(1);
  });

  it("forgets on revocation, and does not keep an answer asked for before it", async () => {
    let owner: ApiKeyOwner | null = OWNER;
    let release: () => void = () => undefined;
    const slow = () =>
      new Promise<ApiKeyOwner | null>(resolve => {
        const answer = owner;
        release = () => resolve(answer);
      });
    const { g, asked } = gate(slow, { cacheTtlMs: 60_000, rateLimit: 0 });
    // Asked before the key was deleted, answered after the broadcast.
    const inFlight = g.authenticate(KEY, fakeRes().res);
    owner = null;
    g.revoked();
    release();
    await expect(inFlight).resolves.toMatchObject({ keyId: "key_1" });
    // That stale answer was not kept: the next request asks again and is refused.
    const next = g.authenticate(KEY, fakeRes().res);
    release();
    await expect(next).rejects.toMatchObject({ code: 401 });
    expect(asked).toHaveLength(2);
  });

  it("counts per key with X-RateLimit headers; 429 with retryAfter beyond", async () => {
    const { g } = gate(async () => OWNER);
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { res, headers } = fakeRes();
      await g.authenticate(KEY, res);
      expect(headers["X-RateLimit-Limit"]).toBe("3");
      seen.push(headers["X-RateLimit-Remaining"]);
    }
    expect(seen).toEqual(["2", "1", "0"]);
    const { res, headers } = fakeRes();
    const err = await g.authenticate(KEY, res).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 429, type: "RATE_LIMITED" });
    expect((err as { data: { retryAfter: number } }).data.retryAfter).toBeGreaterThanOrEqual(1);
    expect(Number(headers["X-RateLimit-Reset"]) * 1000).toBeGreaterThan(Date.now());
  });

  it("lets a key call only what its scopes name, saying which one is missing", () => {
    const { g } = gate(async () => OWNER);
    expect(() => g.authorize(["read"], { method: "GET", path: "/tokens/:id" })).not.toThrow();
    expect(() => g.authorize(["read"], { method: "POST", path: "tokens/:id/transfers" })).toThrow(
      expect.objectContaining({ code: 403, data: { scope: "transfer" } }),
    );
    const all = ["read", "transfer", "mint", "market", "webhooks"];
    expect(() => g.authorize(all, { method: "POST", path: "keys" })).toThrow(
      expect.objectContaining({ code: 403, type: "FORBIDDEN" }),
    );
  });
});
