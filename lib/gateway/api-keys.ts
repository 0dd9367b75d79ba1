import type { ServerResponse } from "node:http";
import type { Context, ServiceBroker } from "moleculer";
import { Lru } from "../shared/lru";
import { envInt } from "../shared/env";
import { clientError, forbidden, unauthorized } from "../shared/errors";
import type { AuthUser } from "../shared/context";
import { hashApiKey, type ApiKeyOwner, type ApiKeyScope } from "../users/api-keys";
import { MemoryAttemptCounter, RedisRateLimitStore, type AttemptCounter } from "./rate-limit";
import { keyScopeOf, routeKeyOf, type MatchedAlias } from "./api-routes";

/**
 * The gateway's side of API keys (docs/api.md "API keys"): who a presented `mm_` key is
 * (asked of users by the key's hash, kept a short while), what its scopes allow on a
 * route (API_KEY_SCOPES in lib/gateway/api-routes.ts, closed to anything it does not
 * name), and its own rate limit with the X-RateLimit-* headers. The key itself is hashed
 * at once and kept nowhere: not in the cache (keyed by hash), a log line, a span, a
 * message to another node or the idempotency store (which is keyed by the owner).
 */

/** users.resolveKey, asked on behalf of the request `parent` (its trace, its request id). */
export type Ask = (keyHash: string, parent?: unknown) => Promise<ApiKeyOwner | null>;

export interface ApiKeySettings {
  /** Requests per key and window (0: no limit of its own). */
  rateLimit: number;
  windowMs: number;
  /**
   * How long an answer of users is kept. A deleted key is evicted from every gateway by
   * the users.apiKeyRevoked broadcast; this bounds its life where the broadcast is lost.
   */
  cacheTtlMs: number;
  cacheMaxEntries: number;
}

/** ctx.meta.user of a request made with a key: its owner, the key's id and scopes. */
export interface KeyUser extends AuthUser {
  keyId: string;
  scopes: ApiKeyScope[];
}

/** From env (docs/configuration.md). */
export function apiKeySettings(): ApiKeySettings {
  return {
    rateLimit: envInt("API_KEY_RATE_LIMIT", 1200),
    windowMs: envInt("API_KEY_RATE_LIMIT_WINDOW_MS", 60_000),
    // Below a second: a deleted key stops everywhere within one even if its broadcast is lost.
    cacheTtlMs: Math.min(envInt("API_KEY_CACHE_TTL_MS", 500), 900),
    cacheMaxEntries: envInt("API_KEY_CACHE_MAX_ENTRIES", 10_000),
  };
}

export class ApiKeyGate {
  /** By key hash: the owner, or null for a key that users does not know. */
  private readonly cache: Lru<string, ApiKeyOwner | null>;
  /** One question to users per hash at a time, however many requests wait for it. */
  private readonly asking = new Map<string, Promise<ApiKeyOwner | null>>();
  /** Bumped by every revocation: an answer asked for before it is not kept. */
  private generation = 0;

  constructor(
    private readonly settings: ApiKeySettings,
    private readonly counter: AttemptCounter,
    private readonly ask: Ask,
  ) {
    this.cache = new Lru({ maxEntries: settings.cacheMaxEntries, ttlMs: settings.cacheTtlMs });
  }

  /**
   * The counter in Redis (shared by every gateway of the namespace) when redisUrl is set;
   * keys resolved by users.resolveKey through `broker`, in the request's context.
   */
  static create(
    settings: ApiKeySettings,
    store: { redisUrl?: string; namespace: string; syncMs?: number },
    broker: Pick<ServiceBroker, "call">,
  ): ApiKeyGate {
    const counter = store.redisUrl
      ? new RedisRateLimitStore(settings.windowMs, {
          redisUrl: store.redisUrl,
          prefix: `${store.namespace}:rl:key`,
          syncMs: store.syncMs,
        })
      : new MemoryAttemptCounter(settings.windowMs);
    const ask: Ask = (keyHash, parent) =>
      broker.call<ApiKeyOwner | null, { keyHash: string }>(
        "users.resolveKey",
        { keyHash },
        { parentCtx: parent as Context | undefined },
      );
    return new ApiKeyGate(settings, counter, ask);
  }

  get counters(): AttemptCounter[] {
    return [this.counter];
  }

  /**
   * The user a presented key acts as, after counting the request against the key's limit
   * (headers set on `res`, so every answer carries them, errors too): 401 for a key nobody
   * holds, 429 beyond the limit.
   */
  async authenticate(key: string, res: ServerResponse, parent?: unknown): Promise<KeyUser> {
    const owner = await this.owner(hashApiKey(key), parent);
    if (!owner) throw unauthorized("Invalid or revoked API key");
    await this.count(owner.keyId, res);
    return { id: owner.userId, keyId: owner.keyId, scopes: owner.scopes };
  }

  /** 403 unless the key's scopes allow the route; a route with no scope is closed to keys. */
  authorize(scopes: readonly string[], alias: MatchedAlias): void {
    const scope = keyScopeOf(routeKeyOf(alias));
    if (!scope) throw forbidden("API keys cannot call this route; use a user token");
    if (!scopes.includes(scope)) {
      throw clientError("FORBIDDEN", `This API key lacks the "${scope}" scope`, { scope });
    }
  }

  /** Forgets every answer: a key was deleted (revocations are rare; the cache refills in a moment). */
  revoked(): void {
    this.generation++;
    this.cache.clear();
    this.asking.clear();
  }

  private async owner(hash: string, parent: unknown): Promise<ApiKeyOwner | null> {
    if (this.cache.has(hash)) return this.cache.get(hash) ?? null;
    let pending = this.asking.get(hash);
    if (!pending) {
      const generation = this.generation;
      pending = this.ask(hash, parent).then(owner => {
        if (generation === this.generation) this.cache.set(hash, owner);
        return owner;
      });
      this.asking.set(hash, pending);
      const done = () => {
        if (this.asking.get(hash) === pending) this.asking.delete(hash);
      };
      pending.then(done, done);
    }
    return pending;
  }

  private async count(keyId: string, res: ServerResponse): Promise<void> {
    const { rateLimit } = this.settings;
    if (rateLimit <= 0) return;
    const used = await this.counter.inc(keyId);
    const reset = this.counter.resetTime;
    res.setHeader("X-RateLimit-Limit", String(rateLimit));
    res.setHeader("X-RateLimit-Remaining", String(Math.max(0, rateLimit - used)));
    // Epoch seconds, as GitHub sends it.
    res.setHeader("X-RateLimit-Reset", String(Math.ceil(reset / 1000)));
    if (used > rateLimit) {
      const retryAfter = Math.max(1, Math.ceil((reset - Date.now()) / 1000));
      throw clientError("RATE_LIMITED", "Rate limit of this API key exceeded", { retryAfter });
    }
  }
}
