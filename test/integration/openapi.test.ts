import { readFileSync } from "node:fs";
import path from "node:path";
import Ajv2020 from "ajv/dist/2020";
import addFormats from "ajv-formats";
import { Wallet } from "ethers";
import { beforeAll, describe, expect, it } from "vitest";
import type { Method, Operation, PathsWith, RequestArgs } from "../../client";
import {
  LOGIN_ROUTES,
  PRIVATE_ROUTES,
  PUBLIC_ROUTES,
  keyScopeOf,
} from "../../lib/gateway/api-routes";
import {
  buildOpenApi,
  parseAlias,
  type ActionInfo,
  type GatewayRoute,
  type OpenApiDocument,
} from "../../lib/gateway/openapi/document";
import { HEALTH_OPERATIONS } from "../../lib/gateway/openapi/health";
import { OpenApiMiddleware } from "../../middlewares/openapi.middleware";
import { DOCS_OPERATIONS } from "../../mixins/openapi.mixin";
import { ALL_SERVICES, usePlatform } from "../helpers/platform";
import { openSse } from "../helpers/sse";

/**
 * GET /api/openapi.json against the code: a valid OpenAPI 3.1 document; every alias of the
 * gateway in it with its method; the committed client (client/openapi.json, and schema.d.ts made from it) is
 * what the gateway serves now; and a contract test over the whole API: one real request
 * per documented operation, its answer valid against the schema documented for its status.
 */

const ROOT = path.resolve(__dirname, "../..");
const ALL = ALL_SERVICES;

type Doc = OpenApiDocument & {
  paths: Record<
    string,
    Record<
      string,
      { operationId?: string; security?: unknown[]; responses: Record<string, unknown> }
    >
  >;
};

describe("the OpenAPI document", () => {
  const p = usePlatform(ALL, { middlewares: [OpenApiMiddleware] });
  let doc: Doc;

  beforeAll(async () => {
    const res = await p.client.api.request("get", "/api/openapi.json");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    doc = res.body as unknown as Doc;
  });

  it("is valid OpenAPI 3.1 (@seriousme/openapi-schema-validator)", async () => {
    const { Validator } = await import("@seriousme/openapi-schema-validator");
    const result = await new Validator().validate(
      structuredClone(doc) as unknown as Record<string, unknown>,
    );
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe("3.1.0");
  });

  it("has every alias of the gateway with its method, the private ones behind the bearer token", () => {
    const expected: Array<[string, string, string | null, boolean, string | null]> = [
      ["get", "/health/live", null, false, null],
      ["get", "/health/ready", null, false, null],
      ["get", "/api/openapi.json", null, false, null],
      ["get", "/api/docs", null, false, null],
    ];
    const tables: Array<[Record<string, string>, boolean]> = [
      [LOGIN_ROUTES, false],
      [PRIVATE_ROUTES, true],
      [PUBLIC_ROUTES, false],
    ];
    for (const [table, isPrivate] of tables) {
      for (const [key, action] of Object.entries(table)) {
        const { method, path: p2 } = parseAlias(key);
        expected.push([method, `/api/${p2}`, action, isPrivate, keyScopeOf(key)]);
      }
    }
    for (const [method, p2, action, isPrivate, scope] of expected) {
      const op = doc.paths[p2]?.[method];
      expect(op, `${method.toUpperCase()} ${p2}`).toBeDefined();
      if (action) expect(op.operationId).toBe(action);
      // An API key where the scope table lets one in, with the scope it needs.
      const authed = [{ bearer: [] }, ...(scope ? [{ apiKey: [scope] }] : [])];
      expect(op.security, `${method} ${p2}`).toEqual(
        isPrivate ? authed : action ? [{}, ...authed] : [],
      );
    }
    // And whatever else the running gateway routes (its settings, as moleculer-web reads them).
    const routes = (
      p.broker.getLocalService("api") as unknown as { settings: { routes: GatewayRoute[] } }
    ).settings.routes;
    for (const route of routes) {
      for (const key of Object.keys(route.aliases ?? {})) {
        const { method, path: aliasPath } = parseAlias(key);
        const full = `/${[route.path, aliasPath]
          .map(s => s.replace(/^\/+|\/+$/g, ""))
          .filter(Boolean)
          .join("/")}`;
        expect(doc.paths[full]?.[method], `${key} of route ${route.name}`).toBeDefined();
      }
    }
  });

  it("is the same built by a gateway on another node, from what this node sends it", () => {
    // This node's INFO packet as the others receive it (Moleculer's safetyObject JSON).
    const info = (
      p.broker.registry as unknown as {
        getLocalNodeInfo(force: boolean): {
          services: Array<{ actions?: Record<string, ActionInfo> }>;
        };
      }
    ).getLocalNodeInfo(true);
    const remote = new Map<string, ActionInfo>();
    for (const s of info.services) {
      for (const [name, action] of Object.entries(s.actions ?? {})) remote.set(name, action);
    }
    const routes = (
      p.broker.getLocalService("api") as unknown as { settings: { routes: GatewayRoute[] } }
    ).settings.routes;
    const built = buildOpenApi({
      routes,
      action: name => remote.get(name),
      statics: { ...HEALTH_OPERATIONS, ...DOCS_OPERATIONS },
    });
    expect(built).toEqual(doc);
  });

  it("is what client/openapi.json and client/schema.d.ts were generated from (npm run gen:client)", async () => {
    const committed: unknown = JSON.parse(
      readFileSync(path.join(ROOT, "client/openapi.json"), "utf8"),
    );
    expect(doc, "the API changed: run npm run gen:client and commit client/").toEqual(committed);
    const { default: openapiTS, astToString } = await import("openapi-typescript");
    const types = astToString(await openapiTS(structuredClone(doc) as never));
    const file = readFileSync(path.join(ROOT, "client/schema.d.ts"), "utf8");
    expect(file.endsWith(types), "client/schema.d.ts is stale: run npm run gen:client").toBe(true);
  });
});

describe("the contract: every documented route answers as documented", () => {
  // Webhooks below are sent to this gateway itself, on loopback.
  const p = usePlatform(ALL, { env: { WEBHOOKS_ALLOW_PRIVATE: "true" } });

  interface Seen {
    method: string;
    path: string;
    status: number;
    body: unknown;
    text: string;
    contentType: string;
  }
  const seen: Seen[] = [];

  /** A typed call (client/index.ts) whose answer is checked against the document below. */
  async function call<M extends Method, P extends PathsWith<M>>(
    method: M,
    route: P,
    ...args: RequestArgs<Operation<P, M>>
  ) {
    const res = await p.client.api.request(method, route, ...args);
    seen.push({
      method,
      path: route,
      status: Number(res.status),
      body: res.body,
      text: res.text,
      contentType: res.headers.get("content-type") ?? "",
    });
    return res;
  }

  /** An answer it may take a moment to reach (a saga ends, a read model catches up). */
  async function until<T>(get: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
    for (let i = 0; ; i++) {
      const v = await get();
      if (done(v) || i >= 100) return v;
      await new Promise(r => setTimeout(r, 50));
    }
  }

  /** Expects `status`, and narrows the answer to it. */
  function ok<T extends { status: unknown; text: string }, const S extends number>(
    res: T,
    status: S,
  ): Extract<T, { status: S }> {
    expect(res.status, res.text).toBe(status);
    return res as Extract<T, { status: S }>;
  }

  it("one request per route, each answer valid against its documented schema", async () => {
    const docRes = await call("get", "/api/openapi.json");
    const doc = ok(docRes, 200).body as unknown as Doc;
    await call("get", "/health/live");
    await call("get", "/health/ready");
    await call("get", "/api/docs");
    await call("get", "/api/docs/{file}", { path: { file: "init.js" } });

    // Users, sessions, profiles, wallets.
    const reg = async (name: string) => {
      const email = `${name}-${Date.now()}@example.com`;
      const res = ok(
        await call("post", "/api/auth/register", {
          body: { email, password: "correct horse battery", displayName: name },
        }),
        201,
      );
      return { id: res.body.user.id, email, token: res.body.token };
    };
    const ann = await reg("ann");
    const bob = await reg("bob");
    ok(
      await call("post", "/api/auth/login", {
        body: { email: ann.email, password: "correct horse battery" },
      }),
      200,
    );
    ok(await call("get", "/api/users/me", { token: ann.token }), 200);
    ok(await call("patch", "/api/users/me", { token: ann.token, body: { bio: "hi" } }), 200);
    ok(await call("get", "/api/users/{id}", { path: { id: bob.id } }), 200);
    const wallet = Wallet.createRandom();
    const challenge = ok(
      await call("post", "/api/users/me/wallets/challenge", {
        token: ann.token,
        body: { address: wallet.address, chainId: 1 },
      }),
      201,
    );
    const signature = await wallet.signMessage(challenge.body.message);
    ok(
      await call("post", "/api/users/me/wallets", {
        token: ann.token,
        body: { message: challenge.body.message, signature },
      }),
      201,
    );
    ok(
      await call("delete", "/api/users/me/wallets/{address}", {
        token: ann.token,
        path: { address: wallet.address },
      }),
      200,
    );

    // API keys: made (the key shown once), listed, used, deleted.
    const made = ok(
      await call("post", "/api/keys", {
        token: ann.token,
        body: { name: "contract", scopes: ["read"] },
      }),
      201,
    ).body;
    ok(await call("get", "/api/keys", { token: ann.token }), 200);
    ok(await call("get", "/api/users/me", { token: made.key }), 200);
    const refused = await call("patch", "/api/users/me", { token: made.key, body: { bio: "x" } });
    expect(refused.status).toBe(403);
    ok(await call("delete", "/api/keys/{id}", { token: ann.token, path: { id: made.id } }), 200);

    // Tokens: the write model and the catalog.
    const tok = ok(
      await call("post", "/api/tokens", {
        token: ann.token,
        body: { name: "Contract", symbol: "CTR", decimals: 0, initialSupply: "1000000" },
      }),
      201,
    ).body;
    const id = tok.id;
    ok(await call("get", "/api/tokens", { query: { q: "contr" } }), 200);
    ok(await call("get", "/api/tokens/{id}", { path: { id } }), 200);
    ok(
      await call("patch", "/api/tokens/{id}/metadata", {
        token: ann.token,
        path: { id },
        body: { description: "for the contract test" },
      }),
      200,
    );
    ok(
      await call("post", "/api/tokens/{id}/transfers", {
        token: ann.token,
        path: { id },
        body: { to: bob.id, amount: "5000" },
        headers: { "Idempotency-Key": "contract-1" },
      }),
      201,
    );
    ok(
      await call("post", "/api/tokens/{id}/approvals", {
        token: ann.token,
        path: { id },
        body: { spender: bob.id, amount: "100" },
      }),
      200,
    );
    ok(
      await call("post", "/api/tokens/{id}/transfers-from", {
        token: bob.token,
        path: { id },
        body: { from: ann.id, to: bob.id, amount: "40" },
      }),
      201,
    );
    ok(
      await call("get", "/api/tokens/{id}/balances/{account}", {
        path: { id, account: bob.id },
      }),
      200,
    );
    ok(await call("get", "/api/tokens/{id}/holders", { path: { id }, query: { limit: 5 } }), 200);
    ok(
      await call("get", "/api/tokens/{id}/allowances/{owner}/{spender}", {
        path: { id, owner: ann.id, spender: bob.id },
      }),
      200,
    );
    ok(await call("get", "/api/me/balances", { token: bob.token }), 200);
    ok(await call("get", "/api/analytics/summary", { token: ann.token }), 200);

    // A launch (a saga), its pool.
    const launched = await call("post", "/api/launches", {
      token: ann.token,
      body: {
        token: { name: "Launch", symbol: "LCH", decimals: 0, initialSupply: "1000" },
        liquidity: { amount: "100" },
      },
    });
    expect([201, 202], launched.text).toContain(launched.status);
    const sagaId = (launched.body as { id: string }).id;
    const saga = await until(
      () => call("get", "/api/launches/{id}", { token: ann.token, path: { id: sagaId } }),
      r => r.status === 200 && r.body.state === "completed",
    );
    const launchedToken = (ok(saga, 200).body.result as { token: { id: string } }).token.id;
    ok(await call("get", "/api/launches", { token: ann.token }), 200);
    ok(await call("get", "/api/pools/{tokenId}", { path: { tokenId: launchedToken } }), 200);

    // NFTs and the market.
    const col = ok(
      await call("post", "/api/collections", {
        token: ann.token,
        body: { name: "Contract art", symbol: "CART", royaltyBps: 500 },
      }),
      201,
    ).body;
    ok(await call("get", "/api/collections", { query: { owner: ann.id } }), 200);
    ok(await call("get", "/api/collections/{id}", { path: { id: col.id } }), 200);
    const mint = async (name: string) =>
      ok(
        await call("post", "/api/collections/{id}/nfts", {
          token: ann.token,
          path: { id: col.id },
          body: { metadata: { name, attributes: [{ trait_type: "size", value: 3 }] } },
        }),
        201,
      ).body;
    const [n1, n2, n3] = [await mint("one"), await mint("two"), await mint("three")];
    ok(await call("get", "/api/nfts", { query: { collection: col.id } }), 200);
    ok(await call("get", "/api/nfts/{id}", { path: { id: n1.id } }), 200);
    ok(
      await call("post", "/api/nfts/{id}/approve", {
        token: ann.token,
        path: { id: n2.id },
        body: { spender: bob.id },
      }),
      200,
    );
    ok(
      await call("post", "/api/nfts/{id}/transfer", {
        token: ann.token,
        path: { id: n2.id },
        body: { to: bob.id },
      }),
      200,
    );
    const list = async (nftId: string, price: string) =>
      ok(
        await call("post", "/api/market/listings", {
          token: ann.token,
          body: { nftId, priceTokenId: id, price },
        }),
        201,
      ).body;
    const listing = await list(n1.id, "1000");
    ok(await call("get", "/api/market/listings", { query: { state: "active" } }), 200);
    ok(await call("get", "/api/market/listings/{id}", { path: { id: listing.id } }), 200);
    const bought = await call("post", "/api/market/listings/{id}/buy", {
      token: bob.token,
      path: { id: listing.id },
      headers: { "Idempotency-Key": "contract-buy" },
    });
    expect([201, 202], bought.text).toContain(bought.status);
    const purchaseId = (bought.body as { sagaId: string }).sagaId;
    ok(
      await until(
        () =>
          call("get", "/api/market/purchases/{id}", { token: bob.token, path: { id: purchaseId } }),
        r => r.status === 200 && r.body.state === "completed",
      ),
      200,
    );
    // The collection's figures, once the catalog has seen the sale.
    ok(
      await until(
        () => call("get", "/api/collections/{id}/stats", { path: { id: col.id } }),
        r => r.status === 200 && (r.body as { sales: { all: number } }).sales.all === 1,
      ),
      200,
    );
    ok(await call("get", "/api/collections/{id}/traits", { path: { id: col.id } }), 200);
    ok(await call("get", "/api/nfts", { query: { collection: col.id, sort: "price" } }), 200);
    // An offer on an NFT of Bob's (he bought n1), accepted by him; another, cancelled.
    const offered = ok(
      await call("post", "/api/market/offers", {
        token: ann.token,
        body: { nftId: n1.id, priceTokenId: id, price: "300" },
      }),
      201,
    ).body as { id: string };
    ok(await call("get", "/api/market/offers", { query: { nft: n1.id } }), 200);
    ok(await call("get", "/api/market/offers/{id}", { path: { id: offered.id } }), 200);
    ok(
      await call("post", "/api/market/offers/{id}/accept", {
        token: bob.token,
        path: { id: offered.id },
        body: { nftId: n1.id },
      }),
      201,
    );
    const withdrawn = ok(
      await call("post", "/api/market/offers", {
        token: ann.token,
        body: { collectionId: col.id, priceTokenId: id, price: "5" },
      }),
      201,
    ).body as { id: string };
    ok(
      await call("delete", "/api/market/offers/{id}", {
        token: ann.token,
        path: { id: withdrawn.id },
      }),
      200,
    );
    const other = await list(n3.id, "7");
    ok(
      await call("delete", "/api/market/listings/{id}", {
        token: ann.token,
        path: { id: other.id },
      }),
      200,
    );
    // An auction of n3 (Ann's again), bid on by Bob; another of n1, cancelled.
    const auctioned = ok(
      await call("post", "/api/market/auctions", {
        token: ann.token,
        body: {
          nftId: n3.id,
          priceTokenId: id,
          reservePrice: "10",
          endsAt: new Date(Date.now() + 3600_000).toISOString(),
        },
      }),
      201,
    ).body as { id: string };
    ok(await call("get", "/api/market/auctions", { query: { state: "active" } }), 200);
    ok(await call("get", "/api/market/auctions/{id}", { path: { id: auctioned.id } }), 200);
    ok(
      await call("post", "/api/market/auctions/{id}/bids", {
        token: bob.token,
        path: { id: auctioned.id },
        body: { amount: "10" },
      }),
      201,
    );
    const unwanted = ok(
      await call("post", "/api/market/auctions", {
        token: ann.token,
        body: {
          nftId: n1.id,
          priceTokenId: id,
          reservePrice: "10",
          minIncrementBps: 100,
          endsAt: new Date(Date.now() + 3600_000).toISOString(),
        },
      }),
      201,
    ).body as { id: string };
    ok(
      await call("delete", "/api/market/auctions/{id}", {
        token: ann.token,
        path: { id: unwanted.id },
      }),
      200,
    );

    // The activity history, once it has the rows of what was done above.
    const transfers = ok(
      await until(
        () => call("get", "/api/tokens/{id}/transfers", { path: { id }, query: { limit: 5 } }),
        r => r.status === 200 && r.body.rows.length > 0,
      ),
      200,
    );
    const transferId = transfers.body.rows[0]!.id;
    ok(
      await call("get", "/api/tokens/{id}/transfers/{transferId}", { path: { id, transferId } }),
      200,
    );
    ok(
      await call("get", "/api/me/activity", { token: ann.token, query: { type: "token.created" } }),
      200,
    );
    ok(
      await until(
        () => call("get", "/api/nfts/{id}/activity", { path: { id: n1.id } }),
        r => r.status === 200 && r.body.rows.some(row => row.type === "sale.sold"),
      ),
      200,
    );
    ok(
      await call("get", "/api/collections/{id}/activity", {
        path: { id: col.id },
        query: { order: "asc" },
      }),
      200,
    );
    // Webhooks: sent to this gateway (a 404 there: retried later, harmless here).
    const hook = ok(
      await call("post", "/api/webhooks", {
        token: ann.token,
        body: { url: `${p.baseUrl}/hook`, events: ["*"], description: "contract" },
      }),
      201,
    ).body;
    ok(await call("get", "/api/webhooks", { token: ann.token }), 200);
    ok(await call("get", "/api/webhooks/{id}", { token: ann.token, path: { id: hook.id } }), 200);
    const sent = ok(
      await call("post", "/api/webhooks/{id}/test", { token: ann.token, path: { id: hook.id } }),
      202,
    ).body;
    ok(
      await call("get", "/api/webhooks/{id}/deliveries", {
        token: ann.token,
        path: { id: hook.id },
        query: { limit: 5 },
      }),
      200,
    );
    ok(
      await call("post", "/api/webhooks/{id}/deliveries/{deliveryId}/redeliver", {
        token: ann.token,
        path: { id: hook.id, deliveryId: sent.id },
      }),
      202,
    );
    ok(
      await call("delete", "/api/webhooks/{id}", { token: ann.token, path: { id: hook.id } }),
      200,
    );

    // The live stream (it stays open: read its head, then close) and its browser session.
    ok(await call("post", "/api/me/events/session", { token: ann.token }), 200);
    ok(await call("delete", "/api/me/events/session"), 200);
    const live = await openSse(`${p.baseUrl}/api/me/events`, {
      authorization: `Bearer ${ann.token}`,
    });
    live.close();
    const liveType = live.headers.get("content-type") ?? "";
    seen.push({
      method: "get",
      path: "/api/me/events",
      status: live.status,
      body: "",
      text: "",
      contentType: liveType,
    });

    // Errors have their documented shape too.
    expect((await call("get", "/api/users/me")).status).toBe(401);
    expect((await call("get", "/api/nfts/{id}", { path: { id: "nft_none" } })).status).toBe(404);
    expect(
      (await call("get", "/api/tokens", { query: { sort: "nope" as "createdAt" } })).status,
    ).toBe(400);
    expect(
      (
        await call("post", "/api/tokens/{id}/transfers", {
          token: bob.token,
          path: { id },
          body: { to: ann.id, amount: "999999999" },
        })
      ).status,
    ).toBe(422);

    // Every answer against the schema of its status.
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema(doc, "doc");
    const pointer = (...parts: string[]) =>
      `doc#/${parts.map(s => s.replace(/~/g, "~0").replace(/\//g, "~1")).join("/")}`;
    const problems: string[] = [];
    for (const s of seen) {
      const where = `${s.method.toUpperCase()} ${s.path} → ${s.status}`;
      let response = doc.paths[s.path]?.[s.method]?.responses[String(s.status)] as
        { $ref?: string; content?: Record<string, unknown> } | undefined;
      let base = ["paths", s.path, s.method, "responses", String(s.status)];
      if (response?.$ref) {
        const name = response.$ref.split("/").pop() ?? "";
        response = doc.components.responses[name] as typeof response;
        base = ["components", "responses", name];
      }
      if (!response?.content) {
        problems.push(`${where}: status not documented`);
        continue;
      }
      const mediaType = s.contentType.split(";")[0].trim();
      const documented = Object.keys(response.content);
      const type = documented.find(t => t === mediaType || t === "*/*");
      if (!type) {
        problems.push(`${where}: ${mediaType} is not among ${documented.join(", ")}`);
        continue;
      }
      const validate = ajv.compile({ $ref: pointer(...base, "content", type, "schema") });
      const value = type === "application/json" ? s.body : s.text;
      if (!validate(value)) {
        problems.push(`${where}: ${ajv.errorsText(validate.errors)} in ${s.text.slice(0, 300)}`);
      }
    }
    expect(problems).toEqual([]);

    // … and no documented operation went without a request.
    const missed: string[] = [];
    for (const [route, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        // A function alias the document does not describe (another page's route) has no contract.
        if (Object.keys(op.responses).every(s => s === "default")) continue;
        if (!seen.some(s => s.path === route && s.method === method && s.status < 300)) {
          missed.push(`${method.toUpperCase()} ${route}`);
        }
      }
    }
    expect(missed).toEqual([]);
  });
});
