import type { IncomingMessage, ServerResponse } from "node:http";
import { getHeapStatistics } from "node:v8";
import type { Context, Service, ServiceSettingSchema } from "moleculer";
import { defineMixin } from "./define";
import { envInt } from "../lib/shared/env";
import { clientError, forbidden, unauthorized, validationError } from "../lib/shared/errors";
import { ACTIVITY_LIVE, type ActivityLive, type ActivityRow } from "../lib/events/activity";
import {
  LiveRefused,
  LiveStreams,
  isCursorShaped,
  streamsTheHeapHolds,
  type LiveOptions,
  type LiveSource,
} from "../lib/gateway/live-stream";
import {
  LIVE_COOKIE,
  LIVE_PATH,
  liveCookie,
  signLiveSession,
  tokenLifeMs,
  verifyLiveSession,
} from "../lib/gateway/live-session";
import { cookieValue, overHttps } from "../lib/gateway/ops/access";
import { sendJson } from "../lib/gateway/http-errors";
import { LIVE_OPERATIONS } from "../lib/gateway/openapi/live";
import { openEventStream } from "../lib/gateway/event-stream";

/**
 * The live stream GET /api/me/events (docs/api.md "Live events"), mixed into the gateway
 * (services/api.service.ts lists `liveEventsRoute` with its routes): the streams themselves
 * are lib/gateway/live-stream.ts; here they get their rows from activity.list, their hints
 * from the ACTIVITY_LIVE broadcast, and their user from the bearer token or, for a
 * browser's EventSource, the stream cookie of POST /api/me/events/session
 * (lib/gateway/live-session.ts).
 */

export interface LiveSettings {
  maxPerUser: number;
  maxStreams: number;
  pingMs: number;
  rereadMs: number;
  stallMs: number;
  retryMs: number;
  retryAfterS: number;
  /** Longest life of a stream cookie (ms); never beyond the bearer token's own. */
  sessionTtlMs: number;
  /** Timeout of each activity.list call (ms). */
  readTimeoutMs: number;
}

type Req = IncomingMessage & {
  $ctx?: Context<unknown, { user?: { id: string } | null }>;
  query?: Record<string, unknown>;
};
type Res = ServerResponse;

interface LiveGatewaySettings extends ServiceSettingSchema {
  live: LiveSettings;
  jwtSecret: string;
  trustProxy: number;
}
interface LiveVars {
  liveStreams: LiveStreams;
}
export interface LiveMethods {
  liveOpen(req: Req, res: Res): Promise<void>;
  liveSession(req: Req, res: Res): void;
}
type LiveThis = Service<LiveGatewaySettings> & LiveVars & LiveMethods;

const NO_STORE = { "Cache-Control": "no-store" };

type Handler = (this: LiveThis, req: Req, res: Res, next: (err?: unknown) => void) => void;
const handle = (fn: (this: LiveThis, req: Req, res: Res) => Promise<void> | void): Handler =>
  function (req, res, next) {
    Promise.resolve()
      .then(() => fn.call(this, req, res))
      .catch(next);
  };

const heapLimit = () => getHeapStatistics().heap_size_limit;

/**
 * The scopes of an API key, when the gateway's authenticate() found one (it puts them on
 * the user); undefined for a user's token. The stream reads, as GET /api/me/activity does:
 * a key needs `read`; the browser session is for a user's token only.
 */
function keyScopes(user: unknown): unknown[] | undefined {
  const scopes = (user as { scopes?: unknown } | null | undefined)?.scopes;
  return Array.isArray(scopes) ? scopes : undefined;
}

const first = (v: unknown): string | undefined =>
  typeof v === "string" ? v : Array.isArray(v) && typeof v[0] === "string" ? v[0] : undefined;

/** A request for the stream itself (not its session): the gateway's stop does not wait for it. */
export function isLiveRequest(req: IncomingMessage): boolean {
  return req.method === "GET" && (req.url ?? "").split("?")[0] === LIVE_PATH;
}

/** The route services/api.service.ts lists: the stream and its browser session. */
export const liveEventsRoute = {
  name: "events",
  path: "/api/me",
  mappingPolicy: "restrict" as const,
  // Neither takes a body.
  bodyParsers: { json: false, urlencoded: false },
  // The gateway's authenticate(): a bearer token's user, null without one, 401 for a bad one.
  authentication: true,
  authorization: false,
  logging: false,
  aliases: {
    "GET events": handle(function (req, res) {
      return this.liveOpen(req, res);
    }),
    "POST events/session": handle(function (req, res) {
      this.liveSession(req, res);
    }),
    "DELETE events/session": handle(function (req, res) {
      const cleared = liveCookie("", 0, overHttps(req, this.settings.trustProxy));
      sendJson(res, 200, {}, { "Set-Cookie": cleared, ...NO_STORE });
    }),
  },
  openapi: LIVE_OPERATIONS,
};

export const LiveEventsMixin = defineMixin<LiveGatewaySettings, LiveMethods, LiveVars>({
  settings: {
    live: {
      maxPerUser: envInt("LIVE_MAX_STREAMS_PER_USER", 5),
      maxStreams: envInt("LIVE_MAX_STREAMS", streamsTheHeapHolds(heapLimit())),
      pingMs: envInt("LIVE_PING_MS", 15_000),
      rereadMs: envInt("LIVE_REREAD_MS", 30_000),
      stallMs: envInt("LIVE_STALL_MS", 30_000),
      retryMs: envInt("LIVE_RETRY_MS", 1000),
      retryAfterS: envInt("LIVE_RETRY_AFTER_S", 5),
      sessionTtlMs: envInt("LIVE_SESSION_TTL_MS", 12 * 3600_000),
      readTimeoutMs: envInt("LIVE_READ_TIMEOUT_MS", 5000),
    } satisfies LiveSettings,
  } as LiveGatewaySettings,

  events: {
    // A hint only (lib/events/activity.ts): the streams of these users read what is new.
    [ACTIVITY_LIVE]: {
      handler(this: LiveThis, ctx: Context<ActivityLive>) {
        const ids = ctx.params?.actorIds;
        if (Array.isArray(ids)) this.liveStreams.hint(ids.filter(i => typeof i === "string"));
      },
    },
    // Hints sent while this node was cut off from NATS are lost: every stream reads.
    "$transporter.connected"(this: LiveThis) {
      this.liveStreams?.pokeAll();
    },
  },

  methods: {
    async liveOpen(req: Req, res: Res) {
      const ctx = req.$ctx;
      // A bearer token (checked by the gateway) wins; else the stream cookie.
      let userId = ctx?.meta.user?.id;
      let expiresAt = Infinity;
      if (userId) {
        const token = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? "";
        expiresAt = Date.now() + (tokenLifeMs(token) ?? Infinity);
      } else if (!req.headers.authorization) {
        const cookie = cookieValue(req.headers.cookie, LIVE_COOKIE);
        const session = cookie ? verifyLiveSession(cookie, this.settings.jwtSecret) : null;
        if (session) {
          ({ userId, expiresAt } = session);
          if (ctx) ctx.meta.user = { id: userId }; // the access log's user
        }
      }
      if (!userId) throw unauthorized();
      const scopes = keyScopes(ctx?.meta.user);
      if (scopes && !scopes.includes("read"))
        throw clientError("FORBIDDEN", 'This API key lacks the "read" scope', { scope: "read" });

      // EventSource's reconnection sends Last-Event-ID: newer than the URL's ?after=.
      // An empty one is none (a client that has seen no row yet).
      const after = first(req.headers["last-event-id"]) || first(req.query?.after) || undefined;
      if (after !== undefined && !isCursorShaped(after))
        throw validationError("after", "is not a cursor of this stream");

      let stream;
      try {
        stream = this.liveStreams.reserve(userId, expiresAt);
      } catch (err) {
        if (!(err instanceof LiveRefused)) throw err;
        sendJson(
          res,
          503,
          {
            error: {
              type: "SERVICE_UNAVAILABLE",
              message: err.message,
              requestId: ctx?.requestID ?? "",
            },
          },
          { "Retry-After": String(err.retryAfterS) },
        );
        return;
      }
      try {
        await stream.begin(after);
      } catch (err) {
        stream.close();
        // activity.list's own word for a cursor that is none of its.
        const type = (err as { type?: unknown }).type;
        if (type === "VALIDATION_ERROR")
          throw validationError("after", "is not a cursor of this stream");
        throw err;
      }
      if (res.destroyed) {
        stream.close();
        return;
      }
      openEventStream(req, res);
      stream.attach(res);
    },

    /** The stream cookie, for a bearer token's user; it lives no longer than the token. */
    liveSession(req: Req, res: Res) {
      const userId = req.$ctx?.meta.user?.id;
      if (!userId) throw unauthorized();
      if (keyScopes(req.$ctx?.meta.user))
        throw forbidden("API keys cannot call this route; use a user token");
      const token = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? "";
      const ttl = Math.min(this.settings.live.sessionTtlMs, tokenLifeMs(token) ?? Infinity);
      if (ttl < 1000) throw unauthorized("Invalid or expired token");
      const cookie = liveCookie(
        signLiveSession(userId, this.settings.jwtSecret, ttl),
        ttl,
        overHttps(req, this.settings.trustProxy),
      );
      const expiresAt = new Date(Date.now() + ttl).toISOString();
      sendJson(res, 200, { expiresAt }, { "Set-Cookie": cookie, ...NO_STORE });
    },
  } satisfies LiveMethods & ThisType<LiveThis>,

  created() {
    const live = this.settings.live;
    const timeout = live.readTimeoutMs;
    const list = (params: Record<string, unknown>) =>
      this.broker.call<{ rows: ActivityRow[] }, Record<string, unknown>>("activity.list", params, {
        timeout,
      });
    const source: LiveSource = {
      async after(actorId, cursor, limit) {
        const params = { actorId, order: "asc", limit, ...(cursor === null ? {} : { cursor }) };
        return (await list(params)).rows;
      },
      async newest(actorId) {
        const { rows } = await list({ actorId, order: "desc", limit: 1 });
        return rows[0]?.cursor ?? null;
      },
    };
    // Reads fail together when activity is down: one warning per user and minute is plenty.
    const warned = new Map<string, number>();
    const opts: LiveOptions = {
      ...live,
      pageSize: 100,
      maxBacklog: 1024 * 1024,
      onReadError: (err, actorId) => {
        const now = Date.now();
        if ((warned.get(actorId) ?? 0) > now - 60_000) return;
        if (warned.size >= 1000) warned.clear();
        warned.set(actorId, now);
        this.logger.warn({ err, userId: actorId }, "Live stream: reading new activity failed");
      },
    };
    this.liveStreams = new LiveStreams(source, opts);
  },

  started() {
    this.liveStreams.start();
  },

  stopped() {
    // Open streams would keep the HTTP server's close() waiting: end them (clients resume).
    this.liveStreams.stop();
  },
});
