import http from "node:http";
import {
  Cachers,
  type Context,
  type Service,
  type ServiceSchema,
  type ServiceSettingSchema,
} from "moleculer";
import ApiGateway from "moleculer-web";
import { nodeProblems } from "../middlewares/health.middleware";
import {
  LOGIN_ROUTES,
  PRIVATE_ROUTES,
  PUBLIC_ROUTES,
  SECRET_ANSWER_ROUTES,
  routeKeyOf,
  routedServices,
} from "../lib/gateway/api-routes";
import { acceptedRequestId, bodyGuard } from "../lib/gateway/body-guard";
import { withAccessLog } from "../lib/gateway/access-log";
import { NearCacheMixin } from "../mixins/near-cache.mixin";
import { envInt, envList, envStr } from "../lib/shared/env";
import { unauthorized, validationError } from "../lib/shared/errors";
import type { GatewayContext } from "../lib/shared/context";
import { ownRetryAfter, sendJson, toErrorResponse } from "../lib/gateway/http-errors";
import {
  CacherAnswers,
  IdempotencyGate,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  MemoryAnswers,
  ReplayResponse,
  isKeptError,
  requestFingerprint,
} from "../lib/gateway/idempotency";
import { jwtSecret, verifyAccessToken, type AuthUser } from "../lib/users/jwt";
import {
  clientAddress,
  allAnswer,
  redisCounters,
  type RedisRateLimitStore,
  retryAfterSeconds,
  trustProxyHops,
  withRateLimits,
} from "../lib/gateway/rate-limit";
import { LoginRefused, LoginThrottle } from "../lib/gateway/login-throttle";
import { TrafficMixin, type TrafficMethods, type TrafficVars } from "../mixins/traffic.mixin";
import { OpsMixin, opsRoute } from "../mixins/ops.mixin";
import { openApiRoute } from "../mixins/openapi.mixin";
import { LiveEventsMixin, isLiveRequest, liveEventsRoute } from "../mixins/live-events.mixin";
import { corsSettings, type CorsSettings } from "../lib/gateway/cors";
import { answeringOptions } from "../lib/gateway/options-request";
import { ApiKeyGate, apiKeySettings, type ApiKeySettings } from "../lib/gateway/api-keys";
import type { GatewayParts, Req, Res, Route } from "../lib/gateway/gateway-request";
import { API_KEY_REVOKED_EVENT, isApiKey } from "../lib/users/api-keys";

/**
 * api: the moleculer-web gateway. REST routes of docs/api.md, JWT checked here (no remote
 * call per request), what a request may carry (lib/gateway/body-guard.ts), Idempotency-Key
 * (lib/gateway/idempotency.ts), rate limits per address, the login throttle per account and address
 * (lib/gateway/login-throttle.ts), API keys and their scopes (lib/gateway/api-keys.ts), OPTIONS
 * answered before routing, the docs/api.md error shape, health, HTTP timeouts.
 */

export interface ApiSettings extends ServiceSettingSchema {
  port: number;
  ip: string;
  jwtSecret: string;
  /** Proxies of ours in front (TRUST_PROXY): X-Forwarded-For's entry that far from the right is the client. */
  trustProxy: number;
  /** What /health/ready waits for. */
  readyServices: string[];
  /**
   * Requests per IP and window on all of /api together (0: no limit), and on login a
   * stricter one on top (loginMax 0: none of its own, nor the login throttle). Not named `rateLimit`: moleculer-web would apply that to every route without a
   * limit of its own (health).
   */
  rateLimits: { max: number; loginMax: number; windowMs: number; syncMs?: number };
  /** Failed logins per account and address, and per account from all (lib/gateway/login-throttle.ts). */
  loginThrottle: { maxFailures: number; accountMaxFailures: number; windowMs: number };
  /** API keys: their rate limit and how long a gateway trusts what users said of one. */
  apiKeys: ApiKeySettings;
  /** Idempotency-Key answers kept in this process when the cacher is not shared (Redis). */
  idempotency: { maxEntries: number; maxBytes: number };
  /** Rate-limit counters in Redis, shared by all gateways, when set; else in memory. */
  redisUrl?: string;
  routes: Route[];
  /** moleculer-web's CORS, from CORS_ORIGINS (lib/gateway/cors.ts); undefined: off. */
  cors?: CorsSettings;
  // moleculer-web's own settings, and the HTTP server's timeouts (ms).
  logRequest: string;
  logResponse: string;
  log4XXResponses: boolean;
  httpServerTimeout: number;
  requestTimeout: number;
  headersTimeout: number;
  rootCallOptions(
    this: ApiThis,
    options: { requestID?: string; tracking?: boolean },
    req: Req,
  ): void;
  onError(this: ApiThis, req: Req, res: Res, err: Error): void;
}

interface ApiMethods {
  httpHandler(req: Req, res: Res, next?: unknown): unknown;
  createServer(): void;
  errorHandler(req: Req, res: Res, err: Error): void;
  authenticate(ctx: Context, route: unknown, req: Req, res: Res): Promise<AuthUser | null>;
  authorize(ctx: GatewayContext, route: { name?: string }, req: Req): Promise<void>;
  readiness(): Promise<{ ready: boolean; missing: string[] }>;
  redisStores(): RedisRateLimitStore[];
}
interface ApiVars {
  keyGate: IdempotencyGate;
  loginGuard: LoginThrottle;
  apiKeys: ApiKeyGate;
}
type ApiThis = Service<ApiSettings> & ApiMethods & ApiVars & GatewayParts & TrafficMethods;

const commonRoute = {
  path: "/api",
  mappingPolicy: "restrict" as const,
  // JSON only, 1 MB: far above any body of docs/api.md, and a bound on what one request costs.
  // Not strict: a body that is valid JSON but no object is refused by guardRequest, by name.
  bodyParsers: { json: { limit: "1mb", strict: false }, urlencoded: false },
  // What the actions may be given of the body and query (lib/gateway/body-guard.ts).
  use: [bodyGuard],
  authentication: true,
  authorization: true,
  logging: false,
  /** Keeps the first answer to an Idempotency-Key (see authorize); a login forgets its failures. */
  async onAfterCall(
    this: ApiThis,
    ctx: GatewayContext,
    _route: unknown,
    req: Req,
    _res: Res,
    data: unknown,
  ) {
    const idem = req.$idempotency;
    if (idem) await this.keyGate.finish(idem, { status: ctx.meta.$statusCode ?? 200, body: data });
    if (req.$login) await this.loginGuard.succeeded(req.$login);
    return data;
  },
};

const ApiService: ServiceSchema<
  ApiSettings,
  ApiMethods & TrafficMethods,
  ApiVars & TrafficVars,
  ApiThis
> = {
  name: "api",
  // The mixins that hold streams (live events, the operator page's) before moleculer-web: their
  // stopped() end the streams, then moleculer-web's server.close(), which would wait for them.
  mixins: [LiveEventsMixin, OpsMixin, ApiGateway, TrafficMixin, NearCacheMixin],

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
    trustProxy: trustProxyHops(envStr("TRUST_PROXY")),
    // By default every service the routes call (lib/gateway/api-routes.ts).
    readyServices: envList("READY_SERVICES").length ? envList("READY_SERVICES") : routedServices(),
    rateLimits: {
      max: envInt("RATE_LIMIT_MAX", 600),
      loginMax: envInt("LOGIN_RATE_LIMIT_MAX", 10),
      windowMs: envInt("RATE_LIMIT_WINDOW_MS", 60_000),
      syncMs: envInt("RATE_LIMIT_SYNC_MS", 100),
    },
    loginThrottle: {
      maxFailures: envInt("LOGIN_ACCOUNT_MAX_FAILURES", 5),
      accountMaxFailures: envInt("LOGIN_ACCOUNT_CEILING", 20),
      windowMs: envInt("LOGIN_ACCOUNT_WINDOW_MS", 15 * 60_000),
    },
    apiKeys: apiKeySettings(),
    idempotency: {
      maxEntries: envInt("IDEMPOTENCY_MAX_ENTRIES", 10_000),
      maxBytes: envInt("IDEMPOTENCY_MAX_BYTES", 16 * 1024 * 1024),
    },
    redisUrl: envStr("REDIS_URL"),
    cors: corsSettings(),
    // Never sent to other nodes in the service descriptor (a Redis URL may hold a password).
    $secureSettings: ["jwtSecret", "redisUrl"],

    logRequest: "debug",
    logResponse: "debug",
    log4XXResponses: false,
    // A client gets this long to send its headers, and its whole request; then 408.
    httpServerTimeout: 30_000,
    requestTimeout: envInt("HTTP_REQUEST_TIMEOUT_MS", 30_000),
    headersTimeout: envInt("HTTP_HEADERS_TIMEOUT_MS", 10_000),

    /** X-Request-ID (or X-Correlation-ID) is kept only when short and plain; else a new one. */
    rootCallOptions(options: { requestID?: string; tracking?: boolean }, req: Req) {
      const given = req.headers["x-correlation-id"] ?? req.headers["x-request-id"];
      options.requestID = acceptedRequestId(given);
      // A stream lasts as long as its client: a stop ends it (stopped()) rather than wait for it.
      if (isLiveRequest(req)) options.tracking = false;
    },

    // Rate limits are added by merged() below, from rateLimits.
    routes: [
      {
        name: "health",
        path: "/health",
        mappingPolicy: "restrict",
        bodyParsers: { json: false, urlencoded: false },
        logging: false,
        aliases: {
          "GET live"(this: ApiThis, _req: Req, res: Res) {
            sendJson(res, 200, { status: "ok" });
          },
          async "GET ready"(this: ApiThis, _req: Req, res: Res) {
            const { ready, missing } = await this.readiness();
            sendJson(
              res,
              ready ? 200 : 503,
              ready ? { status: "ok" } : { status: "unavailable", missing },
            );
          },
        },
      },
      // GET /api/openapi.json and the docs page /api/docs (mixins/openapi.mixin.ts).
      openApiRoute,
      // The operator page, for ADMIN_EMAILS only (mixins/ops.mixin.ts).
      opsRoute,
      // GET /api/me/events, the live stream (mixins/live-events.mixin.ts).
      liveEventsRoute,
      {
        // A stricter limit on guessing passwords.
        ...commonRoute,
        name: "login",
        // Per-route retries: a timed-out login means users is busy hashing; retrying adds scrypt work.
        callOptions: { retries: 0 },
        aliases: LOGIN_ROUTES,
      },
      {
        // Needs a user. Listed before "public" so /users/me wins over /users/:id.
        ...commonRoute,
        name: "private",
        aliases: PRIVATE_ROUTES,
      },
      {
        ...commonRoute,
        name: "public",
        // Canary split and x-version routing (the canary setting, mixins/traffic.mixin.ts).
        onBeforeCall(this: ApiThis, ctx: Context, _route: unknown, req: Req) {
          this.routeTraffic(ctx, req);
        },
        aliases: PUBLIC_ROUTES,
      },
    ],

    onError(req: Req, res: Res, err: Error) {
      if (err instanceof ReplayResponse) {
        sendJson(res, err.stored.status, err.stored.body, { "Idempotent-Replayed": "true" });
        return;
      }
      // An OPTIONS request has no context, only the X-Request-ID it was answered with.
      const requestId = req.$ctx?.requestID ?? String(res.getHeader("X-Request-ID") ?? "");
      const out = toErrorResponse(err, requestId);
      if (out.internal) {
        this.logger.error({ requestID: requestId, err }, "Request failed");
      }
      // A wrong password (or unknown email) counts for the account; sent before the answer.
      if (req.$login && out.status === 401) void this.loginGuard.failed(req.$login);
      const headers: Record<string, string> = {};
      if (out.status === 429) {
        const reset =
          (err instanceof LoginRefused ? err.retryAt : undefined) ??
          req.$route?.rateLimit?.store.resetTime ??
          Date.now() + this.settings.rateLimits.windowMs;
        headers["Retry-After"] = String(ownRetryAfter(err) ?? retryAfterSeconds(reset));
      }
      if (out.status === 503) headers["Retry-After"] = "1";
      sendJson(res, out.status, out.body, headers);
      // Remember what the action decided, so a retry with the key gets the same; never a
      // gateway-side failure, nor "in progress" (retryable), which changes once the work is done.
      const idem = req.$idempotency;
      if (idem) {
        const kept = isKeptError(err, out.status, out.body.error.type);
        void this.keyGate.finish(idem, kept ? { status: out.status, body: out.body } : undefined);
      }
    },
  },

  /**
   * The routes' rate limits, from settings: moleculer-web builds its routes (and their
   * counters) in its own created(), which runs before this service's, so created() would
   * be too late. Here they follow whatever settings the service was given.
   */
  merged(schema) {
    const s = schema.settings;
    if (s)
      s.routes = withRateLimits(s.routes, {
        ...s.rateLimits,
        hops: s.trustProxy,
        redisUrl: s.redisUrl,
      });
  },

  methods: {
    /** Every HTTP request; OPTIONS is answered before any route (lib/gateway/options-request.ts). */
    httpHandler: answeringOptions(ApiGateway.methods?.httpHandler),

    /** moleculer-web's server, with timeouts for headers and whole requests checked every second. */
    createServer() {
      if (this.server) return;
      const { requestTimeout, headersTimeout } = this.settings;
      this.server = http.createServer(
        {
          requestTimeout,
          headersTimeout: Math.min(headersTimeout, requestTimeout),
          connectionsCheckingInterval: Math.min(1000, headersTimeout),
        },
        // One info line per request, however it was answered (lib/gateway/access-log.ts).
        withAccessLog(this.httpHandler, this.logger),
      );
      this.server.setTimeout(this.settings.httpServerTimeout);
      this.isHTTPS = false;
    },

    /** onError logs what is ours to log (5xx, once, with the request id); moleculer-web's default would log again. */
    errorHandler(req: Req, res: Res, err: Error) {
      this.sendError(req, res, err);
    },

    /** A bearer JWT checked here, or an API key through users: none is anonymous, a bad one 401. */
    async authenticate(ctx: Context, _route: unknown, req: Req, res: Res) {
      const header = req.headers.authorization;
      if (!header) return null;
      // The scheme is case-insensitive (RFC 9110).
      const match = /^Bearer +([A-Za-z0-9_.-]+)$/i.exec(header);
      if (!match) throw unauthorized("Malformed Authorization header");
      if (isApiKey(match[1])) return this.apiKeys.authenticate(match[1], res, ctx);
      const user = verifyAccessToken(match[1], this.settings.jwtSecret);
      if (!user) throw unauthorized("Invalid or expired token");
      return user;
    },

    /**
     * Requires a user on the private routes, and of an API key the route's scope; throttles
     * logins per account; answers a repeated Idempotency-Key of a user from the first response.
     */
    async authorize(ctx: GatewayContext, route: { name?: string }, req: Req) {
      if (route.name === "private" && !ctx.meta.user) throw unauthorized();
      // An API key: only the routes its scopes name (lib/gateway/api-routes.ts).
      if (ctx.meta.user?.keyId)
        this.apiKeys.authorize(ctx.meta.user.scopes ?? [], req.$alias ?? {});
      const email = req.$params?.email;
      if (route.name === "login" && this.loginGuard.enabled && typeof email === "string") {
        // Per account and client address (lib/gateway/login-throttle.ts): 429 when refused.
        req.$login = await this.loginGuard.begin(
          email,
          clientAddress(req, this.settings.trustProxy),
        );
      }

      const key = req.headers["idempotency-key"];
      if (req.method !== "POST" || typeof key !== "string" || key === "") return;
      // A new API key's answer is not kept: it would keep the key.
      if (SECRET_ANSWER_ROUTES.has(routeKeyOf(req.$alias ?? {}))) return;
      if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
        throw validationError("Idempotency-Key", "must be at most 255 characters");
      }
      // Only for users: anonymous keys would let anyone fill the store (docs/api.md).
      const scope = ctx.meta.user?.id;
      if (!scope) return;
      const url = req.originalUrl ?? req.parsedUrl ?? "";
      const fingerprint = requestFingerprint(req.method, url, req.body);
      req.$idempotency = await this.keyGate.begin(scope, key, fingerprint);
      // Services that move money keep their own record of the key (docs/architecture.md rule 3).
      ctx.meta.idempotencyKey = `${scope}:${key}`;
    },

    async readiness() {
      const available = new Set(
        this.broker.registry
          .getServiceList({ onlyAvailable: true, skipInternal: true })
          .map(s => s.name),
      );
      const missing = this.settings.readyServices.filter(s => !available.has(s));
      // This node's own dependencies: nats, channels, the Redis cacher, stores that cannot
      // write (a full disk, "service/collection: …"); middlewares/health.middleware.ts.
      missing.push(...nodeProblems(this.broker));
      if (!missing.includes("redis") && !(await allAnswer(this.redisStores())))
        missing.push("redis");
      return { ready: missing.length === 0, missing };
    },

    /** The rate-limit counters kept in Redis: checked for readiness, closed on stop. */
    redisStores(): RedisRateLimitStore[] {
      return redisCounters([
        ...this.routes.map(r => r.rateLimit?.store),
        ...this.loginGuard.counters,
        ...this.apiKeys.counters,
      ]);
    },
  } satisfies ApiMethods & ThisType<ApiThis>,

  created() {
    const { redisUrl, loginThrottle, rateLimits, idempotency } = this.settings;
    // Answers are shared when the cacher is (Redis, entries expire); else a bounded LRU here.
    const cacher = this.broker.cacher;
    const answers =
      cacher instanceof Cachers.Redis
        ? new CacherAnswers(cacher)
        : new MemoryAnswers({ maxEntries: idempotency.maxEntries, maxSize: idempotency.maxBytes });
    this.keyGate = new IdempotencyGate(answers, this.logger);
    // LOGIN_RATE_LIMIT_MAX=0 turns the throttle off too.
    const maxFailures = rateLimits.loginMax > 0 ? loginThrottle.maxFailures : 0;
    this.loginGuard = LoginThrottle.create(
      { ...loginThrottle, maxFailures },
      { redisUrl, namespace: this.broker.namespace },
      (err, what) => this.logger.warn({ err }, what),
    );
    this.apiKeys = ApiKeyGate.create(
      this.settings.apiKeys,
      { redisUrl, namespace: this.broker.namespace, syncMs: rateLimits.syncMs },
      this.broker,
    );
  },

  // users deleted a key: forget what this gateway was told of keys (lib/gateway/api-keys.ts).
  events: {
    [API_KEY_REVOKED_EVENT]() {
      this.apiKeys.revoked();
    },
  },

  async stopped() {
    await Promise.all(this.redisStores().map(s => s.close()));
  },
};

export default ApiService;
