import { randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { rawRequest, type ErrorBody } from "../helpers/http";
import { usePlatform, useUsers } from "../helpers/platform";
import { balanceOf, createToken, type TokenBody } from "../helpers/tokens";

/**
 * The gateway takes only what a client means (docs/api.md "Bodies", "Idempotency-Key",
 * "X-Request-ID"), tried as an attacker would: over HTTP, against the real services.
 */

const fields = (body: unknown): string[] =>
  ((body as ErrorBody).error?.data ?? []).map(d => d.field).sort();

describe("gateway: what a request may carry", () => {
  const p = usePlatform(["api", "users", "tokens"], {
    settings: { api: { readyServices: ["users", "tokens"], rateLimits: { max: 0 } } },
  });
  const [ann, bob] = useUsers(p, ["ann", "bob"]);
  let token: TokenBody;

  beforeAll(async () => {
    token = await createToken(p.client, ann.token, { initialSupply: "1000" });
  });

  const transfers = () => `/api/tokens/${token.id}/transfers`;
  const auth = () => ({ authorization: `Bearer ${ann.token}` });
  const json = (body: string, extra: Record<string, string> = {}) => ({
    "content-type": "application/json",
    ...auth(),
    ...extra,
  });

  describe("the query string of a write route", () => {
    it("never overrides the body: an undeclared query parameter is a 400 naming it", async () => {
      const res = await p.client.post<ErrorBody>(
        `${transfers()}?amount=500`,
        { to: bob.id, amount: "1" },
        { token: ann.token },
      );
      expect(res.status).toBe(400);
      expect(res.body.error.type).toBe("VALIDATION_ERROR");
      expect(fields(res.body)).toEqual(["query.amount"]);
      expect(await balanceOf(p.client, token.id, bob.id)).toBe("0");
    });

    it("is part of an Idempotency-Key's request: another query is never a replay", async () => {
      const key = `q-${randomBytes(6).toString("hex")}`;
      const headers = { "idempotency-key": key };
      const body = { to: bob.id, amount: "1" };
      const first = await p.client.post(transfers(), body, { token: ann.token, headers });
      expect(first.status).toBe(201);
      const other = await p.client.post(`${transfers()}?amount=500`, body, {
        token: ann.token,
        headers,
      });
      expect(other.status).toBe(400);
      expect(other.headers.get("idempotent-replayed")).toBeNull();
      expect(await balanceOf(p.client, token.id, bob.id)).toBe("1");
    });
  });

  describe("bodies", () => {
    it("takes a JSON object only: an array, a string, a number or null is a 400", async () => {
      for (const raw of ["[]", '[{"displayName":"X"}]', '"text"', "42", "null"]) {
        for (const path of ["/api/users/me", `/api/tokens/${token.id}/metadata`]) {
          const res = await rawRequest(p.baseUrl, {
            method: "PATCH",
            path,
            headers: json(raw),
            body: raw,
          });
          expect(res.status, `${path} ${raw}`).toBe(400);
          expect((res.body as unknown as ErrorBody).error.type).toBe("VALIDATION_ERROR");
          expect(fields(res.body), raw).toEqual(["body"]);
        }
      }
    });

    it("answers a body in another media type, or none named, with 415", async () => {
      const body = JSON.stringify({ displayName: "Changed" });
      for (const type of ["text/plain", "application/x-www-form-urlencoded", undefined]) {
        const headers: Record<string, string> = { ...auth() };
        if (type) headers["content-type"] = type;
        const res = await rawRequest(p.baseUrl, {
          method: "PATCH",
          path: "/api/users/me",
          headers,
          body,
        });
        expect(res.status, String(type)).toBe(415);
        expect((res.body as unknown as ErrorBody).error.type).toBe("UNSUPPORTED_MEDIA_TYPE");
      }
      const me = await p.client.get<{ displayName: string }>("/api/users/me", {
        token: ann.token,
      });
      expect(me.body.displayName).toBe("ann");
    });

    it("refuses __proto__, constructor and prototype keys anywhere", async () => {
      const bodies = [
        `{"__proto__": {"to": "${bob.id}", "amount": "3"}}`,
        `{"to": "${bob.id}", "amount": "3", "constructor": {"prototype": {"x": 1}}}`,
        `{"to": "${bob.id}", "amount": "3", "meta": [{"prototype": 1}]}`,
      ];
      for (const raw of bodies) {
        const res = await rawRequest(p.baseUrl, {
          method: "POST",
          path: transfers(),
          headers: json(raw),
          body: raw,
        });
        expect(res.status, raw).toBe(400);
        expect(fields(res.body)[0], raw).toMatch(/(^|\.)(__proto__|constructor|prototype)$/);
      }
      expect(await balanceOf(p.client, token.id, bob.id)).toBe("1");
    });

    it("refuses nesting deeper than 32 levels with 400, also a 400 KB one", async () => {
      const nested = (depth: number) => `{"bio":${"[".repeat(depth - 1)}${"]".repeat(depth - 1)}}`;
      const ok = await rawRequest(p.baseUrl, {
        method: "PATCH",
        path: "/api/users/me",
        headers: json(""),
        body: nested(32),
      });
      // 32 levels pass the gateway; the action then says bio must be a string.
      expect(ok.status).toBe(400);
      expect(fields(ok.body)).toEqual(["bio"]);
      for (const depth of [33, 200_000]) {
        const res = await rawRequest(p.baseUrl, {
          method: "PATCH",
          path: "/api/users/me",
          headers: json(""),
          body: nested(depth),
        });
        expect(res.status, String(depth)).toBe(400);
        expect((res.body as unknown as ErrorBody).error.data?.[0].message).toMatch(
          /deeper than 32/,
        );
      }
    });
  });

  describe("Idempotency-Key", () => {
    it("answers a key over 255 characters with 400 naming it", async () => {
      const res = await p.client.post<ErrorBody>(
        transfers(),
        { to: bob.id, amount: "1" },
        { token: ann.token, headers: { "idempotency-key": "k".repeat(256) } },
      );
      expect(res.status).toBe(400);
      expect(fields(res.body)).toEqual(["Idempotency-Key"]);
    });

    it("keeps nothing for anonymous callers: each keyed bad request is answered afresh", async () => {
      const key = `anon-${randomBytes(6).toString("hex")}`;
      const headers = { "idempotency-key": key };
      const register = (body: object) =>
        p.client.post<ErrorBody>("/api/auth/register", body, { headers });
      const a = await register({ email: "a@example.com", password: "correct horse battery" });
      const b = await register({ displayName: "B" });
      expect(a.status).toBe(400);
      expect(b.status).toBe(400);
      expect(fields(a.body)).toEqual(["displayName"]);
      expect(fields(b.body)).toEqual(["email", "password"]);
      expect(b.headers.get("idempotent-replayed")).toBeNull();
    });
  });

  describe("X-Request-ID", () => {
    it("is kept when at most 128 characters of [A-Za-z0-9._:-], replaced otherwise", async () => {
      const echo = async (id: string) => {
        const res = await p.client.get<ErrorBody>("/api/users/usr_nobody", {
          headers: { "x-request-id": id },
        });
        expect(res.body.error.requestId).toBe(res.headers.get("x-request-id"));
        return res.headers.get("x-request-id");
      };
      const good = `a.B_c:1-${"x".repeat(120)}`;
      expect(good).toHaveLength(128);
      expect(await echo(good)).toBe(good);
      for (const bad of [`${good}x`, "y".repeat(15_000), "has space", "<script>", "ünï"]) {
        const got = await echo(bad);
        expect(got, bad.slice(0, 20)).not.toBe(bad);
        expect(got).toMatch(/^[0-9a-f-]{36}$/);
      }
    });
  });

  describe("Authorization", () => {
    it("takes the Bearer scheme in any case", async () => {
      for (const scheme of ["bearer", "BEARER", "Bearer"]) {
        const res = await p.client.get("/api/users/me", {
          headers: { authorization: `${scheme} ${ann.token}` },
        });
        expect(res.status, scheme).toBe(200);
      }
    });
  });

  describe("text that others see, and the URLs they follow", () => {
    const RLO = "\u202E";
    it("refuses control characters and bidi overrides in names, bios, symbols and descriptions", async () => {
      const me = (body: object) =>
        p.client.patch<ErrorBody>("/api/users/me", body, { token: ann.token });
      for (const [field, value] of [
        ["displayName", `Ann${RLO}gnp.exe`],
        ["displayName", "Ann\u0007"],
        ["bio", "line one\nline two"],
        ["bio", `hi\u2066there\u2069`],
        ["bio", "c1\u0085control"],
      ]) {
        const res = await me({ [field]: value });
        expect(res.status, JSON.stringify(value)).toBe(400);
        expect(fields(res.body)).toEqual([field]);
      }
      const reg = await p.client.post<ErrorBody>("/api/auth/register", {
        email: `rlo-${randomBytes(4).toString("hex")}@example.com`,
        password: "correct horse battery",
        displayName: `Admin${RLO}`,
      });
      expect(fields(reg.body)).toEqual(["displayName"]);

      const create = (body: object) =>
        p.client.post<ErrorBody>(
          "/api/tokens",
          { name: "Fine", symbol: "FINE1", decimals: 0, initialSupply: "1", ...body },
          { token: ann.token },
        );
      expect(fields((await create({ name: `Mint${RLO}` })).body)).toEqual(["name"]);
      expect(fields((await create({ symbol: `AB${RLO}C` })).body)).toEqual(["symbol"]);
      expect(fields((await create({ metadata: { description: "a\u0000b" } })).body)).toEqual([
        "metadata.description",
      ]);
      const meta = await p.client.patch<ErrorBody>(
        `/api/tokens/${token.id}/metadata`,
        { description: `x${RLO}y` },
        { token: ann.token },
      );
      expect(fields(meta.body)).toEqual(["description"]);
    });

    it("takes only http(s) URLs without quotes or angle brackets", async () => {
      const me = (avatarUrl: unknown) =>
        p.client.patch<ErrorBody>("/api/users/me", { avatarUrl }, { token: ann.token });
      for (const bad of [
        "javascript:alert(1)",
        "data:text/html,<b>x</b>",
        'https://example.com/a"onmouseover="alert(1)',
        "https://example.com/<script>",
        "https://example.com/a'b",
        "https://example.com/a b",
        "not a url",
      ]) {
        const res = await me(bad);
        expect(res.status, bad).toBe(400);
        expect(fields(res.body)).toEqual(["avatarUrl"]);
      }
      expect((await me("https://example.com/ann.png?size=64")).status).toBe(200);
      expect((await me(null)).status).toBe(200);
      const meta = await p.client.patch<ErrorBody>(
        `/api/tokens/${token.id}/metadata`,
        { imageUrl: "https://x.example/<img>", website: "ftp://x.example/" },
        { token: ann.token },
      );
      expect(fields(meta.body)).toEqual(["imageUrl", "website"]);
    });
  });
});
