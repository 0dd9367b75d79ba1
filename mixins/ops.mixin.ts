import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context, Service, ServiceSettingSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { BoundedMap } from "../lib/shared/bounded-map";
import { defineMixin } from "./define";
import { envInt, envList } from "../lib/shared/env";
import { clientError, forbidden, unauthorized, validationError } from "../lib/shared/errors";
import { verifyAccessToken } from "../lib/users/jwt";
import {
  OPS_COOKIE,
  adminSet,
  cookieValue,
  isJson,
  overHttps,
  sameOrigin,
  sessionCookie,
  signSession,
  verifySession,
} from "../lib/gateway/ops/access";
import { sendStatic } from "../lib/gateway/ops/page";
import { sendJson } from "../lib/gateway/http-errors";
import {
  OPS_CALLER,
  RateRing,
  countersOf,
  snapshotOf,
  type OpsSnapshot,
  type RegistryNode,
} from "../lib/gateway/ops/snapshot";
import { askNode, marketStats, recentSagas, webhookStats } from "../middlewares/ops-calls";
import { clientAddress, retryAfterSeconds } from "../lib/gateway/rate-limit";
import type { LoginThrottle } from "../lib/gateway/login-throttle";
import { openEventStream } from "../lib/gateway/event-stream";

/**
 * The operator page at /ops (docs/observability.md "Operator page"), mixed into the gateway
 * (services/api.service.ts adds the mixin and `opsRoute`): a static page from public/ops,
 * a JSON snapshot and an SSE stream of the cluster's state, for the admins of ADMIN_EMAILS
 * only. Off (404, as if absent) while ADMIN_EMAILS is empty.
 *
 * One collector per gateway feeds every viewer: each `intervalMs` it asks every node for its
 * metrics (for the requests/s and transfers/s ring), and while someone watches also for its
 * health, the sagas service for the latest sagas, the webhooks service for its delivery
 * backlog and failures and the market for its escrow, each call with a short timeout so a dead
 * node costs one timeout, not a stalled page.
 */

export interface OpsSettings {
  /** Who may see the page (lowercased); empty: the page is off. */
  adminEmails: string[];
  /** Lifetime of the login form's session cookie (ms). */
  sessionTtlMs: number;
  /** How often the state is collected and streamed (ms). */
  intervalMs: number;
  /** Open SSE streams this gateway serves at once; beyond, 503. */
  maxStreams: number;
  /** How far back the requests/s chart goes (ms). */
  historyMs: number;
  /** Timeout of each per-node call (ms). */
  nodeTimeoutMs: number;
  /** Sagas listed. */
  sagas: number;
  /** Auctions listed, soonest end first. */
  auctions: number;
}

type Req = IncomingMessage & {
  $ctx?: Context<unknown, { user?: { id: string } | null }>;
  body?: unknown;
};
type Res = ServerResponse;

/** The settings of the gateway this mixin goes into (services/api.service.ts), as far as it reads them. */
interface OpsGatewaySettings extends ServiceSettingSchema {
  ops: OpsSettings;
  jwtSecret: string;
  trustProxy: number;
}

/** The gateway's own parts this mixin uses. */
interface GatewayPart {
  loginGuard: LoginThrottle;
  /** moleculer-web's routes; the login route's per-address limit is reused for /ops/login. */
  routes: Array<{
    name?: string;
    rateLimit?: {
      limit: number;
      key(req: Req): string | undefined;
      store: { inc(key: string): Promise<number> | number; resetTime: number };
    };
  }>;
}

interface Who {
  userId: string;
  email: string;
}

interface Stream {
  req: Req;
  res: Res;
}

interface OpsVars {
  opsAdmins: Set<string>;
  opsStreams: Set<Stream>;
  opsRing: RateRing;
  opsLatest?: { at: number; snapshot: OpsSnapshot };
  opsInFlight?: Promise<OpsSnapshot>;
  opsTimer?: NodeJS.Timeout;
  opsViewedAt: number;
  opsTicking: boolean;
  /** Emails of bearer-token users, looked up at users (a JWT carries the id only). */
  opsEmails: BoundedMap<string, { email: string; at: number }>;
}

export interface OpsMethods {
  opsEnabled(): boolean;
  opsWho(req: Req): Promise<Who | null>;
  opsRequireAdmin(req: Req): Promise<Who>;
  opsPage(req: Req, res: Res): Promise<void>;
  opsLogin(req: Req, res: Res): Promise<void>;
  opsLogout(req: Req, res: Res): void;
  opsSnapshot(req: Req, res: Res): Promise<void>;
  opsStream(req: Req, res: Res): Promise<void>;
  opsCollect(full: boolean, sample: boolean): Promise<OpsSnapshot>;
  opsTick(): Promise<void>;
}

type OpsThis = Service<OpsGatewaySettings> & GatewayPart & OpsVars & OpsMethods;

/** The routes' handlers: errors go to the gateway's error handler (docs/api.md shape). */
type Handler = (this: OpsThis, req: Req, res: Res, next: (err?: unknown) => void) => void;
function handle(fn: (this: OpsThis, req: Req, res: Res) => Promise<void> | void): Handler {
  return function (this: OpsThis, req, res, next) {
    if (!this.opsEnabled()) {
      next(new ApiGateway.Errors.NotFoundError("NOT_FOUND", undefined));
      return;
    }
    Promise.resolve()
      .then(() => fn.call(this, req, res))
      .catch(next);
  };
}

const clearCookie = (secure: boolean) => sessionCookie("", 0, secure);
/** Sessions and cluster state: never kept by a browser or a proxy. */
const NO_STORE = { "Cache-Control": "no-store" };

const EMAIL_TTL_MS = 30_000;
/** A stream whose client reads slower than this much backlog is closed. */
const MAX_STREAM_BACKLOG = 1024 * 1024;

/** The route entry services/api.service.ts lists: the page, its login and its data. */
export const opsRoute = {
  name: "ops",
  path: "/ops",
  mappingPolicy: "restrict" as const,
  // Login's body only; small.
  bodyParsers: { json: { limit: "16kb", strict: true }, urlencoded: false },
  authentication: false,
  authorization: false,
  logging: false,
  aliases: {
    "GET /": handle(function (req, res) {
      return this.opsPage(req, res);
    }),
    "GET ops.js": handle((_req, res) => sendStatic(res, "ops.js")),
    "GET ops.css": handle((_req, res) => sendStatic(res, "ops.css")),
    "POST login": handle(function (req, res) {
      return this.opsLogin(req, res);
    }),
    "POST logout": handle(function (req, res) {
      this.opsLogout(req, res);
    }),
    "GET api/snapshot": handle(function (req, res) {
      return this.opsSnapshot(req, res);
    }),
    "GET api/stream": handle(function (req, res) {
      return this.opsStream(req, res);
    }),
  },
};

export const OpsMixin = defineMixin<OpsGatewaySettings, OpsMethods, OpsVars & GatewayPart>({
  // Only `ops` is this mixin's; the rest of OpsGatewaySettings is the gateway's own.
  settings: {
    ops: {
      adminEmails: envList("ADMIN_EMAILS"),
      sessionTtlMs: envInt("OPS_SESSION_TTL_MS", 30 * 60_000),
      intervalMs: envInt("OPS_INTERVAL_MS", 2000),
      maxStreams: envInt("OPS_MAX_STREAMS", 20),
      historyMs: 5 * 60_000,
      nodeTimeoutMs: envInt("OPS_NODE_TIMEOUT_MS", 1000),
      sagas: 20,
      auctions: 10,
    } satisfies OpsSettings,
  } as OpsGatewaySettings,

  methods: {
    opsEnabled() {
      return this.opsAdmins.size > 0;
    },

    /**
     * Who the request proves to be: a bearer JWT of the API (401 when malformed, forged or
     * expired), else the page's session cookie (none, or one no longer valid: nobody).
     */
    async opsWho(req: Req): Promise<Who | null> {
      const header = req.headers.authorization;
      if (header) {
        const match = /^Bearer +([A-Za-z0-9_.-]+)$/i.exec(header);
        const user = match && verifyAccessToken(match[1], this.settings.jwtSecret);
        if (!user) throw unauthorized("Invalid or expired token");
        const known = this.opsEmails.get(user.id);
        if (known && Date.now() - known.at < EMAIL_TTL_MS)
          return { userId: user.id, email: known.email };
        const me = await this.broker.call<{ email: string }, Record<string, never>>(
          "users.me",
          {},
          { meta: { user }, retries: 0, caller: OPS_CALLER },
        );
        this.opsEmails.set(user.id, { email: me.email.toLowerCase(), at: Date.now() });
        return { userId: user.id, email: me.email.toLowerCase() };
      }
      const session = verifySession(
        cookieValue(req.headers.cookie, OPS_COOKIE) ?? "",
        this.settings.jwtSecret,
      );
      return session && { userId: session.userId, email: session.email };
    },

    /** 401 without credentials, 403 for anyone not in ADMIN_EMAILS. */
    async opsRequireAdmin(req: Req): Promise<Who> {
      const who = await this.opsWho(req);
      if (!who) throw unauthorized();
      if (!this.opsAdmins.has(who.email)) throw forbidden("Operators only");
      // The access log's user.
      if (req.$ctx) req.$ctx.meta.user = { id: who.userId };
      return who;
    },

    /**
     * The page's shell: its login form for nobody, its data for an admin; 403 for credentials
     * of anyone else (a stale session is cleared).
     */
    async opsPage(req: Req, res: Res) {
      const secure = overHttps(req, this.settings.trustProxy);
      const hadCookie = cookieValue(req.headers.cookie, OPS_COOKIE) !== undefined;
      const who = await this.opsWho(req);
      if (who && !this.opsAdmins.has(who.email)) {
        if (hadCookie) res.setHeader("Set-Cookie", clearCookie(secure));
        throw forbidden("Operators only");
      }
      if (!who && hadCookie) res.setHeader("Set-Cookie", clearCookie(secure));
      sendStatic(res, "index.html");
    },

    /** The login form: users.login, then a session cookie for an admin only. */
    async opsLogin(req: Req, res: Res) {
      if (!isJson(req)) throw clientError("UNSUPPORTED_MEDIA_TYPE", "Send application/json");
      if (!sameOrigin(req, this.settings.trustProxy)) throw forbidden("Cross-site request refused");
      const body = (req.body ?? {}) as { email?: unknown; password?: unknown };
      const { email, password } = body;
      if (typeof email !== "string" || email.length < 1 || email.length > 254)
        throw validationError("email", "is required");
      if (typeof password !== "string" || password.length < 1 || password.length > 128)
        throw validationError("password", "is required");

      // The API login's limits apply here too: per address (its route's counters), per account.
      const perIp = this.routes.find(r => r.name === "login")?.rateLimit;
      const ipKey = perIp?.key(req);
      if (perIp && ipKey && (await perIp.store.inc(ipKey)) > perIp.limit) {
        res.setHeader("Retry-After", String(retryAfterSeconds(perIp.store.resetTime)));
        throw clientError("RATE_LIMITED", "Too many requests");
      }
      // Per account and client address (lib/gateway/login-throttle.ts); a refusal carries its Retry-After.
      const guard = this.loginGuard;
      const from = clientAddress(req, this.settings.trustProxy);
      const attempt = guard.enabled ? await guard.begin(email, from) : undefined;
      const login = await guard.settle(attempt, () =>
        this.broker.call<
          { user: { id: string; email: string } },
          { email: string; password: string }
        >("users.login", { email, password }, { retries: 0 }),
      );
      const who = { userId: login.user.id, email: login.user.email.toLowerCase() };
      if (!this.opsAdmins.has(who.email)) throw forbidden("Operators only");
      const ttl = this.settings.ops.sessionTtlMs;
      res.setHeader(
        "Set-Cookie",
        sessionCookie(
          signSession(who, this.settings.jwtSecret, ttl),
          ttl,
          overHttps(req, this.settings.trustProxy),
        ),
      );
      this.logger.info({ userId: who.userId }, "Operator logged in to /ops");
      sendJson(
        res,
        200,
        {
          user: { id: who.userId, email: who.email },
          expiresAt: new Date(Date.now() + ttl).toISOString(),
        },
        NO_STORE,
      );
    },

    opsLogout(req: Req, res: Res) {
      if (!isJson(req)) throw clientError("UNSUPPORTED_MEDIA_TYPE", "Send application/json");
      if (!sameOrigin(req, this.settings.trustProxy)) throw forbidden("Cross-site request refused");
      res.writeHead(204, {
        "Set-Cookie": clearCookie(overHttps(req, this.settings.trustProxy)),
        ...NO_STORE,
      });
      res.end();
    },

    async opsSnapshot(req: Req, res: Res) {
      await this.opsRequireAdmin(req);
      this.opsViewedAt = Date.now();
      const latest = this.opsLatest;
      const snapshot =
        latest && Date.now() - latest.at < this.settings.ops.intervalMs
          ? latest.snapshot
          : await this.opsCollect(true, false);
      sendJson(res, 200, snapshot, NO_STORE);
    },

    /** Server-sent events: the snapshot now, then one per interval until the client leaves. */
    async opsStream(req: Req, res: Res) {
      await this.opsRequireAdmin(req);
      if (this.opsStreams.size >= this.settings.ops.maxStreams) {
        throw clientError("SERVICE_UNAVAILABLE", "Too many operator streams");
      }
      const stream: Stream = { req, res };
      this.opsStreams.add(stream);
      openEventStream(req, res);
      res.write(`retry: ${Math.max(1000, this.settings.ops.intervalMs)}\n\n`);
      res.on("close", () => this.opsStreams.delete(stream));
      this.opsViewedAt = Date.now();
      const first = this.opsLatest?.snapshot ?? (await this.opsCollect(true, false));
      if (!res.writableEnded) res.write(`data: ${JSON.stringify(first)}\n\n`);
    },

    /**
     * The cluster's state. Every node answers its metrics (and, `full`, its health) within
     * nodeTimeoutMs or is shown without them; `sample` adds the counters to the rate ring.
     */
    async opsCollect(full: boolean, sample: boolean): Promise<OpsSnapshot> {
      if (!sample && this.opsInFlight) return this.opsInFlight;
      const run = async (): Promise<OpsSnapshot> => {
        const { nodeTimeoutMs, sagas, auctions } = this.settings.ops;
        const nodes = this.broker.registry.getNodeList({
          onlyAvailable: false,
          withServices: true,
        }) as unknown as RegistryNode[];
        const [answers, recent, hooks, market] = await Promise.all([
          Promise.all(nodes.map(n => askNode(this.broker, n, full, nodeTimeoutMs))),
          full ? recentSagas(this.broker, sagas, nodeTimeoutMs) : null,
          full ? webhookStats(this.broker, nodeTimeoutMs) : null,
          full ? marketStats(this.broker, auctions, nodeTimeoutMs) : null,
        ]);

        const now = Date.now();
        if (sample) this.opsRing.add(now, countersOf(answers));
        const snapshot = snapshotOf(answers, recent, hooks, market, this.opsRing.list(), now, full);
        if (full) this.opsLatest = { at: now, snapshot };
        return snapshot;
      };
      const p = run();
      if (!sample) {
        this.opsInFlight = p;
        void p
          .finally(() => {
            if (this.opsInFlight === p) this.opsInFlight = undefined;
          })
          .catch(() => undefined);
      }
      return p;
    },

    /** Every interval: sample the counters; while someone watches, the whole state to each stream. */
    async opsTick() {
      if (this.opsTicking) return; // the last one is still waiting on a slow node
      this.opsTicking = true;
      try {
        const watched = this.opsStreams.size > 0 || Date.now() - this.opsViewedAt < 30_000;
        const snapshot = await this.opsCollect(watched, true);
        if (!watched) return;
        const data = `data: ${JSON.stringify(snapshot)}\n\n`;
        for (const stream of [...this.opsStreams]) {
          const { req, res } = stream;
          // Each tick asks again: an expired session or a removed admin ends the stream.
          const allowed = await this.opsRequireAdmin(req).then(
            () => true,
            () => false,
          );
          if (!allowed || res.writableLength > MAX_STREAM_BACKLOG) {
            if (!allowed) res.write("event: denied\ndata: {}\n\n");
            res.end();
            this.opsStreams.delete(stream);
            continue;
          }
          res.write(data);
        }
      } catch (err) {
        this.logger.warn({ err }, "Operator page: collecting the cluster's state failed");
      } finally {
        this.opsTicking = false;
      }
    },
  } satisfies OpsMethods & ThisType<OpsThis>,

  created() {
    const ops = this.settings.ops;
    this.opsAdmins = adminSet(ops.adminEmails);
    this.opsStreams = new Set();
    this.opsRing = new RateRing(Math.ceil(ops.historyMs / ops.intervalMs));
    this.opsEmails = new BoundedMap(1000);
    this.opsViewedAt = 0;
    this.opsTicking = false;
  },

  started() {
    if (!this.opsEnabled()) return;
    const ops = this.settings.ops;
    this.opsTimer = setInterval(() => void this.opsTick(), ops.intervalMs);
    this.opsTimer.unref();
    this.logger.info(
      { admins: this.opsAdmins.size },
      "Operator page on /ops (ADMIN_EMAILS is set)",
    );
  },

  stopped() {
    if (this.opsTimer) clearInterval(this.opsTimer);
    for (const { res } of this.opsStreams) res.end();
    this.opsStreams.clear();
  },
});
