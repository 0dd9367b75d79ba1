import { randomBytes } from "node:crypto";
import type { ActionHandler, Context, Middleware, Service } from "moleculer";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { LOGIN_ROUTES, PRIVATE_ROUTES, PUBLIC_ROUTES } from "../../lib/gateway/api-routes";
import { rawRequest, type HttpResult } from "../helpers/http";
import { ALL_SERVICES, usePlatform, useUsers, type Platform } from "../helpers/platform";
import { balanceOf, createToken, type TokenBody } from "../helpers/tokens";

/**
 * OPTIONS never reaches an action (docs/api.md "CORS"), on any alias the gateway mounts,
 * with CORS on or off: moleculer-web routed an OPTIONS request as the method of its
 * Access-Control-Request-Method, with the query string as params, so a preflight-shaped
 * request moved tokens, made accounts and answered logins with a JWT.
 */

const APP = "https://app.example.com";
const EVIL = "https://evil.example";
const password = "correct horse battery";
/** The X-Request-ID of every OPTIONS below: an action run for one of them carries it. */
const PREFIX = "opt-";

/** Every non-$ action run for a request of this file, by name (the broker's own are $-named). */
const calls: string[] = [];
const spy: Middleware & { name: string } = {
  name: "OptionsSpy",
  localAction(next: ActionHandler<Service>, action: { name?: string }) {
    if ((action.name ?? "").startsWith("$")) return next;
    return function spied(this: Service, ctx: Context) {
      if (ctx.requestID?.startsWith(PREFIX)) calls.push(action.name ?? "");
      return next.call(this, ctx);
    };
  },
};

/** The aliases the running gateway mounts (all its routes: /api, /health, /ops, the docs). */
function mountedAliases(p: Platform): Array<{ method: string; fullPath: string }> {
  const api = p.broker.getLocalService("api") as unknown as {
    aliases: Array<{ method: string; fullPath: string }>;
  };
  return api.aliases.map(a => ({ method: a.method, fullPath: a.fullPath }));
}

let seq = 0;
const options = (p: Platform, path: string, headers: Record<string, string> = {}) =>
  rawRequest(p.baseUrl, {
    method: "OPTIONS",
    path,
    headers: { "x-request-id": `${PREFIX}${seq++}`, ...headers },
  });

/** An answer that did nothing: 204 and empty, or (CORS on, a foreign origin) 403. */
function expectNothingDone(res: HttpResult, label: string, refused = false) {
  expect(res.text, label).not.toMatch(/"token"|eyJ/);
  if (refused) {
    expect(res.status, label).toBe(403);
    expect((res.body.error as { type: string }).type, label).toBe("ORIGIN_NOT_ALLOWED");
    return;
  }
  expect(res.status, label).toBe(204);
  expect(res.text, label).toBe("");
}

const configs: Array<{ cors: boolean; env: Record<string, string> }> = [
  { cors: false, env: {} },
  { cors: true, env: { CORS_ORIGINS: APP } },
];

describe.each(configs)("OPTIONS with CORS $cors", ({ cors, env }) => {
  const p = usePlatform(ALL_SERVICES, {
    env,
    middlewares: [spy],
    settings: { api: { readyServices: [], rateLimits: { max: 0, loginMax: 0 } } },
  });
  const [ann, bob] = useUsers(p, ["ann", "bob"]);
  let token: TokenBody;
  beforeAll(async () => {
    token = await createToken(p.client, ann.token, { initialSupply: "1000" });
  });
  beforeEach(() => {
    calls.length = 0;
  });

  const transfers = () => `/api/tokens/${token.id}/transfers?to=${bob.id}&amount=7`;
  const bearer = () => ({ authorization: `Bearer ${ann.token}` });

  it("runs no action behind any alias, with or without token, Origin or Access-Control-Request-Method", async () => {
    const fresh = `opt-${randomBytes(4).toString("hex")}@example.com`;
    const query = new URLSearchParams({
      to: bob.id,
      from: ann.id,
      spender: bob.id,
      amount: "7",
      email: fresh,
      password,
      displayName: "Hacked",
      name: "Hacked",
      symbol: "HACK",
      initialSupply: "5",
    });
    const values: Record<string, string> = {
      id: token.id,
      tokenId: token.id,
      account: bob.id,
      owner: ann.id,
      spender: bob.id,
      address: `0x${"ab".repeat(20)}`,
      file: "x.js",
    };
    const aliases = mountedAliases(p);
    // Both tables of lib/gateway/api-routes.ts, and /health, /ops and the docs besides.
    const tables = [LOGIN_ROUTES, PRIVATE_ROUTES, PUBLIC_ROUTES].flatMap(t => Object.keys(t));
    const mounted = aliases.map(a => `${a.method} ${a.fullPath}`);
    expect(mounted).toEqual(expect.arrayContaining(tables.map(t => t.replace(" ", " /api/"))));
    expect(mounted).toEqual(
      expect.arrayContaining(["GET /health/ready", "POST /ops/login", "GET /api/openapi.json"]),
    );
    for (const alias of aliases) {
      const path = alias.fullPath.replace(/:(\w+)/g, (_, k: string) => values[k] ?? "x");
      const none: Record<string, string> = {};
      for (const auth of [none, bearer()]) {
        for (const origin of [undefined, EVIL, APP]) {
          for (const acrm of [none, { "access-control-request-method": alias.method }]) {
            const headers: Record<string, string> = { ...auth, ...acrm, "idempotency-key": "w" };
            if (origin) headers.origin = origin;
            const label = `OPTIONS ${path} ${JSON.stringify({ ...headers, authorization: !!auth.authorization })}`;
            const res = await options(p, `${path}?${query}`, headers);
            expectNothingDone(res, label, cors && origin === EVIL);
            if (res.status === 204 && !cors) {
              expect(res.headers.get("access-control-allow-origin"), label).toBeNull();
              expect(res.headers.get("allow"), label).toContain(alias.method);
            }
          }
        }
      }
    }
    expect(calls).toEqual([]);
    // Nothing moved, no account was made, the profile is as it was.
    expect(await balanceOf(p.client, token.id, bob.id)).toBe("0");
    const login = await p.client.post("/api/auth/login", { email: fresh, password });
    expect(login.status).toBe(401);
    const me = await p.client.get<{ displayName: string }>("/api/users/me", { token: ann.token });
    expect(me.body.displayName).toBe("ann");
  });

  it("pays no transfer, however often the preflight of one is sent with one Idempotency-Key", async () => {
    const headers = {
      ...bearer(),
      "access-control-request-method": "POST",
      "idempotency-key": `opt-${randomBytes(4).toString("hex")}`,
      ...(cors ? { origin: APP } : {}),
    };
    for (let i = 0; i < 2; i++)
      expectNothingDone(await options(p, transfers(), headers), "transfer");
    const approve = `/api/tokens/${token.id}/approvals?spender=${bob.id}&amount=5`;
    expectNothingDone(await options(p, approve, headers), "approve");
    expectNothingDone(
      await options(p, "/api/users/me?displayName=Hacked", {
        ...headers,
        "access-control-request-method": "PATCH",
      }),
      "PATCH users/me",
    );
    expect(await balanceOf(p.client, token.id, bob.id)).toBe("0");
    const allowance = await p.client.get<{ amount: string }>(
      `/api/tokens/${token.id}/allowances/${ann.id}/${bob.id}`,
    );
    expect(allowance.body.amount).toBe("0");
    const me = await p.client.get<{ displayName: string }>("/api/users/me", { token: ann.token });
    expect(me.body.displayName).toBe("ann");
    expect(calls).toEqual([]);
  });

  it("makes no account and hands out no JWT to a page of another site", async () => {
    const email = `evil-${randomBytes(4).toString("hex")}@example.com`;
    const from = { origin: cors ? APP : EVIL, "access-control-request-method": "POST" };
    const creds = (e: string) =>
      new URLSearchParams({ email: e, password, displayName: "Evil" }).toString();
    expectNothingDone(await options(p, `/api/auth/register?${creds(email)}`, from), "register");
    expectNothingDone(await options(p, `/api/auth/login?${creds(ann.email)}`, from), "login");
    expect((await p.client.post("/api/auth/login", { email, password })).status).toBe(401);
    expect(calls).toEqual([]);
  });

  it("answers an OPTIONS to an unknown path with 404 (a preflight with CORS on: 204), calling nothing", async () => {
    const res = await options(p, "/api/nowhere?x=1");
    expect(res.status).toBe(404);
    expect(res.headers.get("x-request-id")).toMatch(/^opt-/);
    expect((res.body.error as { requestId: string }).requestId).toMatch(/^opt-/);
    const pre = await options(p, "/api/nowhere", {
      origin: APP,
      "access-control-request-method": "POST",
    });
    expect(pre.status).toBe(cors ? 204 : 404);
    if (cors) expect(pre.headers.get("access-control-allow-origin")).toBe(APP);
    expect(calls).toEqual([]);
  });
});
