import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import Redis from "ioredis";
import { Lru } from "../shared/lru";

/**
 * Rate limits of the gateway: per client address (moleculer-web's `rateLimit` route
 * option, counted here in Redis when it is set), and the counters of the login throttle
 * (lib/gateway/login-throttle.ts). Windows are fixed and aligned to the epoch: all gateways agree
 * on when a window ends without talking to each other.
 */

/** Counts per key and window; what moleculer-web's rate limiter and the login throttle use. */
export interface AttemptCounter {
  /** One more for `key` in this window: the count so far. */
  inc(key: string): Promise<number>;
  /** `key`'s count so far in this window, without counting. */
  peek(key: string): Promise<number>;
  /** Forgets `key`'s count in this window. */
  reset(key: string): Promise<void>;
  /** When this window ends (epoch ms). */
  readonly resetTime: number;
}

/** Keys a syncing store counts locally per window (distinct clients of one gateway). */
const MAX_LOCAL_KEYS = 100_000;

const windowEnd = (windowMs: number): number => (Math.floor(Date.now() / windowMs) + 1) * windowMs;

/** A moleculer-web rate-limit store kept in Redis, so that every gateway counts the same hits. */
export class RedisRateLimitStore implements AttemptCounter {
  private readonly redis: Redis;
  private readonly prefix: string;

  /**
   * With `syncMs` > 0, hits are counted here and sent to Redis together every `syncMs` (one
   * INCRBY per key): a Redis round trip per request was a fifth of a gateway's CPU
   * (docs/benchmarks.md). Each gateway then admits at most `syncMs` worth of hits beyond
   * what the others had counted by its last sync. 0 counts every hit in Redis at once (the
   * login limits: few hits, and each must count).
   */
  private readonly syncMs: number;
  /** This window's hits not yet sent, and the totals Redis answered at the last sync. */
  private pending = new Map<string, number>();
  /** The hits of the sync under way: counted until Redis's totals (which hold them) arrive. */
  private sending = new Map<string, number>();
  private known = new Map<string, number>();
  private window = -1;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly windowMs: number,
    opts: { redisUrl: string; prefix: string; syncMs?: number },
  ) {
    this.syncMs = opts.syncMs ?? 0;
    this.redis = new Redis(opts.redisUrl, {
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      lazyConnect: false,
    });
    // Without a listener ioredis reports a lost connection as an unhandled error event; the
    // failure reaches the caller anyway as a rejected command, which the gateway logs.
    this.redis.on("error", () => undefined);
    this.prefix = opts.prefix;
  }

  get resetTime(): number {
    return windowEnd(this.windowMs);
  }

  private keyOf(key: string): string {
    return `${this.prefix}:${Math.floor(Date.now() / this.windowMs)}:${key}`;
  }

  async inc(key: string): Promise<number> {
    const k = this.keyOf(key);
    if (this.syncMs > 0) {
      const window = Math.floor(Date.now() / this.windowMs);
      if (window !== this.window) {
        // A new window: the old counts are over (unsent hits of the last window are dropped).
        this.window = window;
        this.pending = new Map();
        this.sending = new Map();
        this.known = new Map();
      }
      if (this.pending.size + this.known.size < MAX_LOCAL_KEYS) {
        const pending = (this.pending.get(k) ?? 0) + 1;
        this.pending.set(k, pending);
        this.syncTimer ??= setTimeout(() => void this.sync(), this.syncMs).unref();
        return (this.known.get(k) ?? 0) + (this.sending.get(k) ?? 0) + pending;
      }
      // Beyond the bound, every hit goes to Redis at once.
    }
    const res = await this.redis.multi().incr(k).pexpire(k, this.windowMs).exec();
    const count = res?.[0]?.[1];
    if (typeof count !== "number") throw new Error("Rate limit store did not answer");
    return count;
  }

  /** Sends the hits counted since the last sync; learns every key's total across gateways. */
  private sync(): Promise<void> {
    this.syncTimer = undefined;
    const batch = this.pending;
    if (batch.size === 0) return Promise.resolve();
    this.pending = new Map();
    this.sending = batch;
    const known = this.known;
    const sent = () => {
      if (this.sending === batch) this.sending = new Map();
    };
    const multi = this.redis.multi();
    for (const [k, n] of batch) multi.incrby(k, n).pexpire(k, this.windowMs);
    this.syncing = multi.exec().then(
      res => {
        let i = 0;
        for (const [k, n] of batch) {
          const total = res?.[i]?.[1];
          known.set(k, typeof total === "number" ? total : (known.get(k) ?? 0) + n);
          i += 2;
        }
        sent();
      },
      // Redis down: the hits still count here, so this gateway keeps limiting on its own.
      () => {
        for (const [k, n] of batch) known.set(k, (known.get(k) ?? 0) + n);
        sent();
      },
    );
    return this.syncing;
  }

  async peek(key: string): Promise<number> {
    const k = this.keyOf(key);
    // Batched: what this gateway counted and learned at its last sync (the maps are this window's).
    if (this.syncMs > 0 && this.window === Math.floor(Date.now() / this.windowMs)) {
      return (this.known.get(k) ?? 0) + (this.sending.get(k) ?? 0) + (this.pending.get(k) ?? 0);
    }
    return Number((await this.redis.get(k)) ?? 0);
  }

  async reset(key: string): Promise<void> {
    const k = this.keyOf(key);
    this.pending.delete(k);
    this.known.delete(k);
    await this.redis.del(k);
  }

  async ping(): Promise<boolean> {
    return (await this.redis.ping()) === "PONG";
  }

  async close(): Promise<void> {
    clearTimeout(this.syncTimer);
    await this.sync();
    await this.syncing;
    await this.redis.quit();
  }
}

/** Counts in this process, at most `maxEntries` keys (the oldest go first). */
export class MemoryAttemptCounter implements AttemptCounter {
  private readonly counts: Lru<string, number>;

  constructor(
    private readonly windowMs: number,
    maxEntries = 100_000,
  ) {
    this.counts = new Lru({ maxEntries, ttlMs: windowMs });
  }

  get resetTime(): number {
    return windowEnd(this.windowMs);
  }

  private keyOf(key: string): string {
    return `${Math.floor(Date.now() / this.windowMs)}:${key}`;
  }

  async inc(key: string): Promise<number> {
    const k = this.keyOf(key);
    const count = (this.counts.get(k) ?? 0) + 1;
    this.counts.set(k, count);
    return count;
  }

  async peek(key: string): Promise<number> {
    return this.counts.get(this.keyOf(key)) ?? 0;
  }

  async reset(key: string): Promise<void> {
    this.counts.delete(this.keyOf(key));
  }
}

/** The login throttle's key of an email: hashed, so Redis holds no addresses. */
export function accountKey(email: string): string {
  return createHash("sha256").update(email.trim().toLowerCase()).digest("hex").slice(0, 32);
}

/** Seconds until a rate-limit window ends, for Retry-After. */
export function retryAfterSeconds(resetTime: number, now = Date.now()): number {
  return Math.max(1, Math.ceil((resetTime - now) / 1000));
}

/** TRUST_PROXY as a count of our proxies: unset, false or 0: none; true: one; n: n. */
export function trustProxyHops(raw: string | undefined): number {
  const v = (raw ?? "").trim().toLowerCase();
  if (["", "false", "no", "off"].includes(v)) return 0;
  if (["true", "yes", "on"].includes(v)) return 1;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`Env TRUST_PROXY must be false, true or a number of proxies, got "${raw}"`);
  }
  return n;
}

/** The parts of a request that say where it came from. */
export interface FromRequest {
  headers: IncomingHttpHeaders;
  socket: { remoteAddress?: string };
}

/**
 * The client's address. Behind `hops` proxies of ours, each of which appends the address
 * it saw to X-Forwarded-For, that is the entry `hops` from the right: what is left of it
 * was written by the client and proves nothing. With fewer entries, the leftmost.
 */
export function clientAddress(req: FromRequest, hops: number): string {
  const socket = req.socket.remoteAddress ?? "unknown";
  if (hops <= 0) return socket;
  const header = req.headers["x-forwarded-for"];
  const chain = (Array.isArray(header) ? header.join(",") : (header ?? ""))
    .split(",")
    .map(s => s.trim())
    .filter(Boolean);
  const path = [socket, ...chain.reverse()];
  return path[Math.min(hops, path.length - 1)];
}

/** moleculer-web's `rateLimit` route option, as built here. */
export interface RouteRateLimit {
  window: number;
  limit: number;
  headers: boolean;
  key(req: FromRequest): string;
  StoreFactory: new (window: number, opts: unknown, broker: { namespace: string }) => RouteStore;
}

/** A counter of the gateway's and the limit it enforces. */
interface LimitPart {
  counter: AttemptCounter;
  limit: number;
}

/**
 * The store moleculer-web keeps on a route, over counters that other routes share:
 * moleculer-web builds one store per route, and a store of its own on each route let a
 * client send RATE_LIMIT_MAX to the public routes and as many again to the private ones.
 * A hit counts in every part; what it answers is the count that leaves, against the
 * route's own limit, the least remaining of all parts (so X-Rate-Limit-Remaining and the
 * 429 follow whichever limit is nearer).
 */
export class RouteStore {
  constructor(
    private readonly limit: number,
    readonly parts: LimitPart[],
  ) {}

  async inc(key: string): Promise<number> {
    const counts = await Promise.all(this.parts.map(p => p.counter.inc(key)));
    const remaining = Math.min(...this.parts.map((p, i) => p.limit - counts[i]));
    return this.limit - remaining;
  }

  get resetTime(): number {
    return Math.max(...this.parts.map(p => p.counter.resetTime));
  }
}

/** The Redis counters among `stores` (RouteStores' parts, counters), each once. */
/** Whether every one of the Redis counters answers a ping (readiness). */
export async function allAnswer(stores: RedisRateLimitStore[]): Promise<boolean> {
  const answers = await Promise.all(stores.map(s => s.ping().catch(() => false)));
  return answers.every(Boolean);
}

export function redisCounters(stores: unknown[]): RedisRateLimitStore[] {
  const counters = stores.flatMap(s => (s instanceof RouteStore ? s.parts.map(p => p.counter) : s));
  return [...new Set(counters)].filter(s => s instanceof RedisRateLimitStore);
}

/**
 * The gateway's limits by route name, per client address: one counter of `max` for all of
 * /api (the public, private and docs routes, and login too), and login's own `loginMax`
 * on top. Counted in Redis under `<namespace>:rl:<all|login>` when redisUrl is set
 * (gateways of one cluster share counts, other clusters don't): logins count each attempt
 * at once, the API's hits go in batches every `syncMs` (RedisRateLimitStore). A limit of
 * 0 is none.
 */
export function gatewayRateLimits(opts: {
  max: number;
  loginMax: number;
  windowMs: number;
  syncMs?: number;
  hops: number;
  redisUrl?: string;
}): Record<string, RouteRateLimit | undefined> {
  const { windowMs, redisUrl } = opts;
  // Made by the first route's store, when the broker (its namespace) is known; one each.
  const counters = new Map<string, AttemptCounter>();
  const counter = (prefix: string, syncMs: number, namespace: string): AttemptCounter => {
    let c = counters.get(prefix);
    if (!c) {
      c = redisUrl
        ? new RedisRateLimitStore(windowMs, {
            redisUrl,
            prefix: `${namespace}:rl:${prefix}`,
            syncMs,
          })
        : new MemoryAttemptCounter(windowMs);
      counters.set(prefix, c);
    }
    return c;
  };
  const api = { prefix: "all", limit: opts.max, syncMs: opts.syncMs ?? 0 };
  const login = { prefix: "login", limit: opts.loginMax, syncMs: 0 };
  const limit = (parts: Array<typeof api>): RouteRateLimit | undefined => {
    const on = parts.filter(p => p.limit > 0);
    if (on.length === 0) return undefined;
    const own = on[on.length - 1].limit;
    return {
      window: windowMs,
      limit: own,
      headers: true,
      key: req => clientAddress(req, opts.hops),
      StoreFactory: class extends RouteStore {
        constructor(_window: number, _opts: unknown, broker: { namespace: string }) {
          const made = on.map(p => ({
            counter: counter(p.prefix, p.syncMs, broker.namespace),
            limit: p.limit,
          }));
          super(own, made);
        }
      },
    };
  };
  const all = limit([api]);
  return { login: limit([api, login]), private: all, public: all, openapi: all, events: all };
}

/** `routes` with the rate limit of their name (gatewayRateLimits), the others as given. */
export function withRateLimits<R extends { name?: string }>(
  routes: R[],
  opts: Parameters<typeof gatewayRateLimits>[0],
): R[] {
  const limits = gatewayRateLimits(opts);
  return routes.map(route => {
    const limit = route.name ? limits[route.name] : undefined;
    return limit ? { ...route, rateLimit: limit } : route;
  });
}
