import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context, Service, ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { envBool, envInt, envList, envStr } from "../lib/env";
import { unauthorized, conflict } from "../lib/errors";
import { toErrorResponse } from "../lib/http-errors";
import {
  IDEMPOTENCY_TTL_SECONDS,
  ReplayResponse,
  idempotencyCacheKey,
  requestFingerprint,
  type StoredResponse,
} from "../lib/idempotency";
import { jwtSecret, verifyAccessToken, type AuthUser } from "../lib/jwt";
import { RedisRateLimitStore, retryAfterSeconds } from "../lib/rate-limit";
import { TrafficMixin, type TrafficMethods } from "../mixins/traffic.mixin";

/**
 * api: the moleculer-web gateway. REST routes of API.md, JWT checked here (no remote
 * call per request), Idempotency-Key, rate limits, the API.md error shape, health.
 */

type Req = IncomingMessage & {
  $ctx?: Context<unknown, GatewayMeta>;
  $route?: { name?: string; rateLimit?: { store: { resetTime: number } } };
  $endpoint?: unknown;
  $params?: unknown;
  $idempotency?: { cacheKey: string; fingerprint: string };
  parsedUrl?: string;
  body?: unknown;
};
type Res = ServerResponse;

interface GatewayMeta {
  user?: AuthUser | null;
  $statusCode?: number;
  $responseHeaders?: Record<string, string>;
  idempotencyKey?: string;
}

interface ApiSettings {
  port: number;
  ip: string;
  jwtSecret: string;
  trustProxy: boolean;
  readyServices: string[];
  $secureSettings: string[];
  [key: string]: unknown;
}

interface ApiMethods {
  authenticate(ctx: Context, route: unknown, req: Req): AuthUser | null;
  authorize(ctx: Context<unknown, GatewayMeta>, route: { name?: string }, req: Req): Promise<void>;
  clientIp(req: Req): string;
  sendJson(res: Res, status: number, body: unknown, headers?: Record<string, string>): void;
  readiness(): Promise<{ ready: boolean; missing: string[] }>;
}
interface ApiVars {
  inflight: Set<string>;
}
type ApiThis = Service<ApiSettings> & ApiMethods & ApiVars;

const redisUrl = envStr("REDIS_URL");
/** Redis rate-limit stores by broker, to check them for readiness and close them on stop. */
const rateStores = new WeakMap<object, RedisRateLimitStore[]>();
const windowMs = envInt("RATE_LIMIT_WINDOW_MS", 60_000);

/** Per-IP fixed-window limits, shared through Redis when REDIS_URL is set. */
function rateLimit(limit: number, prefix: string) {
  if (limit <= 0) return undefined;
  return {
    window: windowMs,
    limit,
    headers: true,
    key: (req: Req) => {
      const svc = (req as unknown as { $service: ApiThis }).$service;
      return svc.clientIp(req);
    },
    ...(redisUrl
      ? {
          StoreFactory: class {
            constructor(win: number, _opts: unknown, broker: object) {
              const store = new RedisRateLimitStore(win, {
                redisUrl: redisUrl as string,
                // Gateways of one cluster (namespace) share counts; other clusters don't.
                prefix: `${envStr("NAMESPACE", "mintmesh")}:rl:${prefix}`,
              });
              const list = rateStores.get(broker) ?? [];
              list.push(store);
              rateStores.set(broker, list);
              return store;
            }
          },
        }
      : {}),
  };
}

const generalLimit = rateLimit(envInt("RATE_LIMIT_MAX", 600), "all");
const loginLimit = rateLimit(envInt("LOGIN_RATE_LIMIT_MAX", 10), "login");

const commonRoute = {
  path: "/api",
  mappingPolicy: "restrict" as const,
  // Only JSON; 1 MB is far above any body of API.md and bounds what one request costs.
  bodyParsers: { json: { limit: "1mb", strict: true }, urlencoded: false },
  authentication: true,
  authorization: true,
  logging: false,
  /** Keeps the first answer to an Idempotency-Key (see authorize). */
  async onAfterCall(
    this: ApiThis,
    ctx: Context<unknown, GatewayMeta>,
    _route: unknown,
    req: Req,
    _res: Res,
    data: unknown,
  ) {
    const idem = req.$idempotency;
    if (idem) {
      const stored: StoredResponse = {
        fingerprint: idem.fingerprint,
        status: ctx.meta.$statusCode ?? 200,
        body: data,
      };
      await this.broker.cacher?.set(idem.cacheKey, stored, IDEMPOTENCY_TTL_SECONDS);
      this.inflight.delete(idem.cacheKey);
    }
    return data;
  },
};

const ApiService: ServiceSchema<ApiSettings, ApiMethods, ApiVars> = {
  name: "api",
  mixins: [ApiGateway as unknown as Partial<ServiceSchema>, TrafficMixin],

  // moleculer-web's one action per HTTP request: retrying it replays the whole request under a
  // new parent id; its breaker, tripped by one failing downstream, made every route 404; its
  // bulkhead would cap the node's HTTP concurrency for all routes together.
  actions: {
    rest: {
      retryPolicy: { enabled: false },
      circuitBreaker: { enabled: false },
      bulkhead: { enabled: false },
    },
  },

  settings: {
    port: envInt("PORT", 3000),
    ip: envStr("HOST", "0.0.0.0"),
    jwtSecret: jwtSecret(),
    trustProxy: envBool("TRUST_PROXY", false),
    // What /health/ready waits for; by default every service the routes below call.
    readyServices: envList("READY_SERVICES").length
      ? envList("READY_SERVICES")
      : ["users", "tokens", "catalog", "analytics"],
    $secureSettings: ["jwtSecret"],

    logRequest: "debug",
    logResponse: "debug",
    log4XXResponses: false,
    httpServerTimeout: 30_000,

    routes: [
      {
        name: "health",
        path: "/health",
        mappingPolicy: "restrict",
        bodyParsers: { json: false, urlencoded: false },
        logging: false,
        aliases: {
          "GET live"(this: ApiThis, _req: Req, res: Res) {
            this.sendJson(res, 200, { status: "ok" });
          },
          async "GET ready"(this: ApiThis, _req: Req, res: Res) {
            const { ready, missing } = await this.readiness();
            this.sendJson(
              res,
              ready ? 200 : 503,
              ready ? { status: "ok" } : { status: "unavailable", missing },
            );
          },
        },
      },
      {
        // A stricter limit on guessing passwords.
        ...commonRoute,
        name: "login",
        rateLimit: loginLimit,
        // Per-route retries: a timed-out login means users is busy hashing; retrying adds scrypt work.
        callOptions: { retries: 0 },
        aliases: { "POST auth/login": "users.login" },
      },
      {
        // Needs a user. Listed before "public" so /users/me wins over /users/:id.
        ...commonRoute,
        name: "private",
        rateLimit: generalLimit,
        aliases: {
          "GET users/me": "users.me",
          "PATCH users/me": "users.updateMe",
          "POST users/me/wallets/challenge": "users.walletChallenge",
          "POST users/me/wallets": "users.linkWallet",
          "DELETE users/me/wallets/:address": "users.unlinkWallet",

          "POST tokens": "tokens.create",
          "PATCH tokens/:id/metadata": "tokens.updateMetadata",
          "POST tokens/:id/transfers": "tokens.transfer",
          "POST tokens/:id/approvals": "tokens.approve",
          "POST tokens/:id/transfers-from": "tokens.transferFrom",
          "GET me/balances": "tokens.myBalances",

          "GET analytics/summary": "analytics.summary",
        },
      },
      {
        ...commonRoute,
        name: "public",
        rateLimit: generalLimit,
        // Canary split and x-version routing (CANARY env, mixins/traffic.mixin.ts).
        onBeforeCall(this: ApiThis & TrafficMethods, ctx: Context, _route: unknown, req: Req) {
          this.routeTraffic(ctx, req);
        },
        aliases: {
          "POST auth/register": "users.register",
          "GET users/:id": "users.get",

          // Reads of tokens come from the catalog (the CQRS read model) ...
          "GET tokens": "catalog.list",
          "GET tokens/:id": "catalog.get",
          // ... except balances and allowances, which must be exact: the write model answers.
          "GET tokens/:id/balances/:account": "tokens.balance",
          "GET tokens/:id/holders": "tokens.holders",
          "GET tokens/:id/allowances/:owner/:spender": "tokens.allowance",
        },
      },
    ],

    onError(this: ApiThis, req: Req, res: Res, err: Error) {
      if (err instanceof ReplayResponse) {
        this.sendJson(res, err.stored.status, err.stored.body, { "Idempotent-Replayed": "true" });
        return;
      }
      const ctx = req.$ctx;
      const requestId = ctx?.requestID ?? "";
      const out = toErrorResponse(err, requestId);
      if (out.internal) {
        this.logger.error({ requestID: requestId, err }, "Request failed");
      }
      const headers: Record<string, string> = {};
      if (out.status === 429) {
        const reset = req.$route?.rateLimit?.store.resetTime ?? Date.now() + windowMs;
        headers["Retry-After"] = String(retryAfterSeconds(reset));
      }
      if (out.status === 503) headers["Retry-After"] = "1";
      this.sendJson(res, out.status, out.body, headers);
      // Remember what the action answered, so a retry with the key gets the same.
      const idem = req.$idempotency;
      // Only what the action itself decided; a gateway-side failure (unavailable, rate limit) is not an answer.
      const fromAction =
        (err as { name?: string }).name === "ClientError" ||
        out.body.error.type === "VALIDATION_ERROR";
      if (
        idem &&
        req.$endpoint &&
        fromAction &&
        out.status < 500 &&
        ![401, 429].includes(out.status)
      ) {
        const stored: StoredResponse = {
          fingerprint: idem.fingerprint,
          status: out.status,
          body: out.body,
        };
        void this.broker.cacher?.set(idem.cacheKey, stored, IDEMPOTENCY_TTL_SECONDS);
      }
      if (idem) this.inflight.delete(idem.cacheKey);
    },
  },

  methods: {
    /** onError logs what is ours to log (5xx, once, with the request id); moleculer-web's default would log again. */
    errorHandler(req: Req, res: Res, err: Error) {
      (this as unknown as { sendError(q: Req, s: Res, e: Error): void }).sendError(req, res, err);
    },

    /** Verifies the bearer token locally: a missing token is anonymous, a bad one is 401. */
    authenticate(_ctx: Context, _route: unknown, req: Req): AuthUser | null {
      const header = req.headers.authorization;
      if (!header) return null;
      const match = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(header);
      if (!match) throw unauthorized("Malformed Authorization header");
      const user = verifyAccessToken(match[1], this.settings.jwtSecret);
      if (!user) throw unauthorized("Invalid or expired token");
      return user;
    },

    /** Requires a user on the private routes; answers a repeated Idempotency-Key from the first response. */
    async authorize(
      this: ApiThis,
      ctx: Context<unknown, GatewayMeta>,
      route: { name?: string },
      req: Req,
    ) {
      if (route.name === "private" && !ctx.meta.user) throw unauthorized();

      const key = req.headers["idempotency-key"];
      if (req.method !== "POST" || typeof key !== "string" || key === "") return;
      if (key.length > 255) throw conflict("Idempotency-Key is longer than 255 characters");
      const scope = ctx.meta.user?.id ?? `anon:${this.clientIp(req)}`;
      const cacheKey = idempotencyCacheKey(scope, key);
      const fingerprint = requestFingerprint(req.method, req.parsedUrl ?? "", req.body);
      const stored = (await this.broker.cacher?.get(cacheKey)) as StoredResponse | null | undefined;
      if (stored) {
        if (stored.fingerprint !== fingerprint) {
          throw conflict("Idempotency-Key was already used for a different request");
        }
        throw new ReplayResponse(stored);
      }
      if (this.inflight.has(cacheKey))
        throw conflict("A request with this Idempotency-Key is in progress");
      this.inflight.add(cacheKey);
      req.$idempotency = { cacheKey, fingerprint };
      // Services that move money keep their own record of the key (DESIGN rule 3).
      ctx.meta.idempotencyKey = `${scope}:${key}`;
    },

    clientIp(req: Req): string {
      const forwarded = req.headers["x-forwarded-for"];
      if (this.settings.trustProxy && typeof forwarded === "string")
        return forwarded.split(",")[0].trim();
      return req.socket.remoteAddress ?? "unknown";
    },

    sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}) {
      if (res.headersSent) return;
      res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", ...headers });
      res.end(JSON.stringify(body));
    },

    async readiness() {
      const available = new Set(
        (
          this.broker.registry.getServiceList({
            onlyAvailable: true,
            skipInternal: true,
          }) as Array<{ name: string }>
        ).map(s => s.name),
      );
      const missing = this.settings.readyServices.filter(s => !available.has(s));
      for (const store of rateStores.get(this.broker) ?? []) {
        const ok = await store.ping().catch(() => false);
        if (!ok) {
          missing.push("redis");
          break;
        }
      }
      return { ready: missing.length === 0, missing };
    },
  },

  created() {
    this.inflight = new Set();
  },

  async stopped() {
    await Promise.all((rateStores.get(this.broker) ?? []).map(s => s.close()));
  },
};

export default ApiService;
