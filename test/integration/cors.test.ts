import { describe, expect, it } from "vitest";
import { rawRequest, registerUser } from "../helpers/http";
import { startPlatform, usePlatform } from "../helpers/platform";

/**
 * CORS from env (lib/gateway/cors.ts): off by default; CORS_ORIGINS names the origins whose pages
 * may call the API; the gateway answers their preflights and refuses other origins.
 */

const APP = "https://app.example.com";
const preflight = (origin: string, method = "POST") => ({
  method: "OPTIONS",
  path: "/api/tokens",
  headers: {
    origin,
    "access-control-request-method": method,
    "access-control-request-headers": "authorization,content-type,idempotency-key",
  },
});
const list = (value: string | null) => (value ?? "").split(/\s*,\s*/).filter(Boolean);

describe("CORS with CORS_ORIGINS", () => {
  const p = usePlatform(["api", "users"], {
    env: { CORS_ORIGINS: `${APP}, https://*.example.org` },
  });

  it("answers the preflight of an allowed origin with the methods and headers the API takes", async () => {
    const res = await rawRequest(p.baseUrl, preflight(APP));
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(APP);
    expect(res.headers.get("vary")).toMatch(/Origin/);
    expect(list(res.headers.get("access-control-allow-methods"))).toEqual(
      expect.arrayContaining(["GET", "POST", "PATCH", "DELETE"]),
    );
    expect(list(res.headers.get("access-control-allow-headers"))).toEqual(
      expect.arrayContaining(["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"]),
    );
    expect(res.headers.get("access-control-max-age")).toBe("600");
    // Bearer tokens need no cookies: credentials are off unless CORS_CREDENTIALS=true.
    expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    expect(res.text).toBe("");
  });

  it("allows a subdomain of a `*.` pattern", async () => {
    const res = await rawRequest(p.baseUrl, preflight("https://shop.example.org"));
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://shop.example.org");
  });

  it("refuses the preflight of another origin: 403 without Access-Control-Allow-Origin", async () => {
    for (const origin of ["https://evil.example.net", "http://app.example.com", "null"]) {
      const res = await rawRequest(p.baseUrl, preflight(origin));
      expect(res.status, origin).toBe(403);
      expect(res.headers.get("access-control-allow-origin"), origin).toBeNull();
      expect((res.body.error as { type: string }).type).toBe("ORIGIN_NOT_ALLOWED");
    }
  });

  it("marks a real request from an allowed origin readable, with the headers a page needs", async () => {
    const user = await registerUser(p.client, "cors");
    const res = await rawRequest(p.baseUrl, {
      method: "GET",
      path: `/api/users/${user.id}`,
      headers: { origin: APP, "x-request-id": "cors-1" },
    });
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(user.id);
    expect(res.headers.get("access-control-allow-origin")).toBe(APP);
    expect(list(res.headers.get("access-control-expose-headers"))).toEqual(
      expect.arrayContaining(["Retry-After", "X-Request-ID", "Location", "Idempotent-Replayed"]),
    );
    expect(res.headers.get("x-request-id")).toBe("cors-1");
  });

  it("refuses a real request from another origin, and serves one without Origin as before", async () => {
    const refused = await rawRequest(p.baseUrl, {
      method: "GET",
      path: "/health/live",
      headers: { origin: "https://evil.example.net" },
    });
    expect(refused.status).toBe(403);
    expect(refused.headers.get("access-control-allow-origin")).toBeNull();

    const plain = await rawRequest(p.baseUrl, { method: "GET", path: "/health/live" });
    expect(plain.status).toBe(200);
    expect(plain.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("CORS settings", () => {
  it("is off by default: no CORS header, a preflight gets a bare 204", async () => {
    const p = await startPlatform(["api"], { settings: { api: { readyServices: [] } } });
    try {
      const res = await rawRequest(p.baseUrl, preflight(APP));
      // Answered as any OPTIONS is (lib/gateway/options-request.ts), never with CORS headers.
      expect(res.status).toBe(204);
      expect(res.headers.get("allow")).toBe("GET, POST, OPTIONS");
      expect(res.headers.get("access-control-allow-origin")).toBeNull();
      expect(res.headers.get("access-control-allow-methods")).toBeNull();
      const get = await rawRequest(p.baseUrl, {
        method: "GET",
        path: "/health/live",
        headers: { origin: APP },
      });
      expect(get.status).toBe(200);
      expect(get.headers.get("access-control-allow-origin")).toBeNull();
    } finally {
      await p.stop();
    }
  });

  it("allows any origin with `*` when credentials are off, and sends credentials when on", async () => {
    const any = await startPlatform(["api"], { env: { CORS_ORIGINS: "*" } });
    try {
      const res = await rawRequest(any.baseUrl, preflight("https://anyone.example"));
      expect(res.status).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe("*");
    } finally {
      await any.stop();
    }
    const creds = await startPlatform(["api"], {
      env: { CORS_ORIGINS: APP, CORS_CREDENTIALS: "true" },
    });
    try {
      const res = await rawRequest(creds.baseUrl, preflight(APP));
      expect(res.headers.get("access-control-allow-origin")).toBe(APP);
      expect(res.headers.get("access-control-allow-credentials")).toBe("true");
    } finally {
      await creds.stop();
    }
  });

  it("refuses to start with `*` and credentials, or with something that is no origin", async () => {
    await expect(
      startPlatform(["api"], { env: { CORS_ORIGINS: "*", CORS_CREDENTIALS: "true" } }),
    ).rejects.toThrow(/CORS_ORIGINS=\* is refused with CORS_CREDENTIALS=true/);
    await expect(
      startPlatform(["api"], { env: { CORS_ORIGINS: "https://app.example.com/path" } }),
    ).rejects.toThrow(/not an origin/);
  });
});
