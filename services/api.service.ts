import type { IncomingMessage, ServerResponse } from "node:http";
import type {
  ActionEndpoint,
  Context,
  Service,
  ServiceBroker,
  ServiceSchema,
  ServiceSettingSchema,
} from "moleculer";
import ApiGateway from "moleculer-web";
import { storeHealth } from "../lib/store-health";
import { LOGIN_ROUTES, PRIVATE_ROUTES, PUBLIC_ROUTES } from "../lib/api-routes";
import { envBool, envInt, envList, envStr } from "../lib/env";
import { unauthorized, conflict } from "../lib/errors";
import type { GatewayContext } from "../lib/context";
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
import { TrafficMixin, type TrafficMethods, type TrafficVars } from "../mixins/traffic.mixin";

/**
 * api: the moleculer-web gateway. REST routes of API.md, JWT checked here (no remote
 * call per request), Idempotency-Key, rate limits, the API.md error shape, health.
 */

/** A request that carries an Idempotency-Key: where its answer is kept, and what it was. */
interface KeyedRequest {
  cacheKey: string;
  fingerprint: string;
}

/** moleculer-web's request, as far as this file reads it. */
type Req = IncomingMessage & {
  $ctx?: GatewayContext;
  $route?: { name?: string; rateLimit?: { store: { resetTime: number } } };
  $endpoint?: ActionEndpoint;
  $idempotency?: KeyedRequest;
  parsedUrl?: string;
  body?: unknown;
};
type Res = ServerResponse;

/** A moleculer-web rate limit (its `rateLimit` route option). */
interface RateLimit {
  window: number;
  limit: number;
  headers: boolean;
  key(req: Req): string;
  StoreFactory?: new (window: number, opts: unknown, broker: ServiceBroker) => object;
}

/** A moleculer-web route; what is not typed here is passed to it as it is. */
interface Route {
  name: string;
  path: string;
  rateLimit?: RateLimit;
  [option: string]: unknown;
}

export interface ApiSettings extends ServiceSettingSchema {
  port: number;
  ip: string;
  jwtSecret: string;
  /** Take the client IP from X-Forwarded-For (only behind a proxy we run). */
  trustProxy: boolean;
  /** What /health/ready waits for. */
  readyServices: string[];
  /**
   * Requests per IP and window (0: no limit), stricter on login. Not named `rateLimit`:
   * moleculer-web would apply that to every route without a limit of its own (health).
   */
  rateLimits: { max: number; loginMax: number; windowMs: number };
  /** Rate-limit counters in Redis, shared by all gateways, when set; else in memory. */
  redisUrl?: string;
  routes: Route[];
  // moleculer-web's own settings.
  logRequest: string;
  logResponse: string;
  log4XXResponses: boolean;
  httpServerTimeout: number;
  onError(this: ApiThis, req: Req, res: Res, err: Error): void;
}

interface ApiMethods {
  errorHandler(req: Req, res: Res, err: Error): void;
  authenticate(ctx: Context, route: unknown, req: Req): AuthUser | null;
  authorize(ctx: GatewayContext, route: { name?: string }, req: Req): Promise<void>;
  sendJson(res: Res, status: number, body: unknown, headers?: Record<string, string>): void;
  keepAnswer(idem: KeyedRequest, status: number, body: unknown): Promise<void>;
  readiness(): Promise<{ ready: boolean; missing: string[] }>;
  redisStores(): RedisRateLimitStore[];
}
interface ApiVars {
  inflight: Set<string>;
}
/** What moleculer-web adds to the service and we use; its typings declare none of it. */
interface GatewayParts {
  sendError(req: Req, res: Res, err: Error): void;
  routes: Array<{ rateLimit?: { store: object } }>;
}
type ApiThis = Service<ApiSettings> & ApiMethods & ApiVars & GatewayParts & TrafficMethods;

/** The caller's IP: the socket's, or X-Forwarded-For's first when we run the proxy. */
function clientIp(req: Req, trustProxy: boolean): string {
  const forwarded = req.headers["x-forwarded-for"];
  if (trustProxy && typeof forwarded === "string") return forwarded.split(",")[0].trim();
  return req.socket.remoteAddress ?? "unknown";
}

/** Per-IP fixed-window limit of `limit` requests, shared through Redis when redisUrl is set. */
function rateLimit(settings: ApiSettings, limit: number, prefix: string): RateLimit | undefined {
  if (limit <= 0) return undefined;
  const { redisUrl, trustProxy } = settings;
  return {
    window: settings.rateLimits.windowMs,
    limit,
    headers: true,
    key: req => clientIp(req, trustProxy),
    StoreFactory: redisUrl ? redisCounters(redisUrl, prefix) : undefined,
  };
}

/** A moleculer-web StoreFactory: counters in Redis under `<namespace>:rl:<prefix>`. */
function redisCounters(redisUrl: string, prefix: string) {
  return class extends RedisRateLimitStore {
    constructor(window: number, _opts: unknown, broker: ServiceBroker) {
      // Gateways of one cluster (namespace) share counts; other clusters don't.
      super(window, { redisUrl, prefix: `${broker.namespace}:rl:${prefix}` });
    }
  };
}

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
    ctx: GatewayContext,
    _route: unknown,
    req: Req,
    _res: Res,
    data: unknown,
  ) {
    const idem = req.$idempotency;
    if (idem) {
      await this.keepAnswer(idem, ctx.meta.$statusCode ?? 200, data);
      this.inflight.delete(idem.cacheKey);
    }
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
  mixins: [ApiGateway, TrafficMixin],

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
    // By default every service the routes below call.
    readyServices: envList("READY_SERVICES").length
      ? envList("READY_SERVICES")
      : ["users", "tokens", "catalog", "analytics"],
    rateLimits: {
      max: envInt("RATE_LIMIT_MAX", 600),
      loginMax: envInt("LOGIN_RATE_LIMIT_MAX", 10),
      windowMs: envInt("RATE_LIMIT_WINDOW_MS", 60_000),
    },
    redisUrl: envStr("REDIS_URL"),
    // Never sent to other nodes in the service descriptor (a Redis URL may hold a password).
    $secureSettings: ["jwtSecret", "redisUrl"],

    logRequest: "debug",
    logResponse: "debug",
    log4XXResponses: false,
    httpServerTimeout: 30_000,

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
        this.sendJson(res, err.stored.status, err.stored.body, { "Idempotent-Replayed": "true" });
        return;
      }
      const requestId = req.$ctx?.requestID ?? "";
      const out = toErrorResponse(err, requestId);
      if (out.internal) {
        this.logger.error({ requestID: requestId, err }, "Request failed");
      }
      const headers: Record<string, string> = {};
      if (out.status === 429) {
        const reset =
          req.$route?.rateLimit?.store.resetTime ?? Date.now() + this.settings.rateLimits.windowMs;
        headers["Retry-After"] = String(retryAfterSeconds(reset));
      }
      if (out.status === 503) headers["Retry-After"] = "1";
      this.sendJson(res, out.status, out.body, headers);
      // Remember what the action answered, so a retry with the key gets the same.
      const idem = req.$idempotency;
      // Only what the action itself decided; a gateway-side failure (unavailable, rate limit) is not an answer.
      // Not an answer that stays: "in progress" (retryable) changes once the work is done.
      const fromAction =
        (err.name === "ClientError" && !(err as { retryable?: boolean }).retryable) ||
        out.body.error.type === "VALIDATION_ERROR";
      if (
        idem &&
        req.$endpoint &&
        fromAction &&
        out.status < 500 &&
        ![401, 429].includes(out.status)
      ) {
        void this.keepAnswer(idem, out.status, out.body);
      }
      if (idem) this.inflight.delete(idem.cacheKey);
    },
  },

  /**
   * The routes' rate limits, from settings: moleculer-web builds its routes (and their
   * counters) in its own created(), which runs before this service's, so created() would
   * be too late. Here they follow whatever settings the service was given.
   */
  merged(schema) {
    const settings = schema.settings;
    if (!settings) return;
    const { max, loginMax } = settings.rateLimits;
    const limits: Record<string, RateLimit | undefined> = {
      login: rateLimit(settings, loginMax, "login"),
      private: rateLimit(settings, max, "all"),
      public: rateLimit(settings, max, "all"),
    };
    settings.routes = settings.routes.map(route =>
      limits[route.name] ? { ...route, rateLimit: limits[route.name] } : route,
    );
  },

  methods: {
    /** onError logs what is ours to log (5xx, once, with the request id); moleculer-web's default would log again. */
    errorHandler(req: Req, res: Res, err: Error) {
      this.sendError(req, res, err);
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
    async authorize(ctx: GatewayContext, route: { name?: string }, req: Req) {
      if (route.name === "private" && !ctx.meta.user) throw unauthorized();

      const key = req.headers["idempotency-key"];
      if (req.method !== "POST" || typeof key !== "string" || key === "") return;
      if (key.length > 255) throw conflict("Idempotency-Key is longer than 255 characters");
      const scope = ctx.meta.user?.id ?? `anon:${clientIp(req, this.settings.trustProxy)}`;
      const cacheKey = idempotencyCacheKey(scope, key);
      const fingerprint = requestFingerprint(req.method, req.parsedUrl ?? "", req.body);
      // The cacher gives back what onAfterCall/onError stored; its typings say a plain record.
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

    sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}) {
      if (res.headersSent) return;
      res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", ...headers });
      res.end(JSON.stringify(body));
    },

    /** Keeps the answer to an Idempotency-Key, for the retries with that key. */
    async keepAnswer(idem: KeyedRequest, status: number, body: unknown): Promise<void> {
      const stored: StoredResponse = { fingerprint: idem.fingerprint, status, body };
      await this.broker.cacher?.set(idem.cacheKey, stored, IDEMPOTENCY_TTL_SECONDS);
    },

    async readiness() {
      const available = new Set(
        this.broker.registry
          .getServiceList({ onlyAvailable: true, skipInternal: true })
          .map(s => s.name),
      );
      const missing = this.settings.readyServices.filter(s => !available.has(s));
      // Stores of this process that cannot write (a full disk), named "service/collection".
      missing.push(...storeHealth.problems());
      for (const store of this.redisStores()) {
        const ok = await store.ping().catch(() => false);
        if (!ok) {
          missing.push("redis");
          break;
        }
      }
      return { ready: missing.length === 0, missing };
    },

    /** The routes' rate-limit counters kept in Redis: checked for readiness, closed on stop. */
    redisStores(): RedisRateLimitStore[] {
      return this.routes.flatMap(route => {
        const store = route.rateLimit?.store;
        return store instanceof RedisRateLimitStore ? [store] : [];
      });
    },
  } satisfies ApiMethods & ThisType<ApiThis>,

  created() {
    this.inflight = new Set();
  },

  async stopped() {
    await Promise.all(this.redisStores().map(s => s.close()));
  },
};

export default ApiService;
