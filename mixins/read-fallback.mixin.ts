import { createHash } from "node:crypto";
import {
  Cachers,
  type Context,
  type Service,
  type ServiceSchema,
  type ServiceSettingSchema,
} from "moleculer";
import type { GatewayContext } from "../lib/shared/context";
import { envInt } from "../lib/shared/env";
import { Lru } from "../lib/shared/lru";
import { defineMixin } from "./define";

/**
 * Fallback for reads: keeps the last good answer of chosen actions per action + params and
 * serves it when a later call fails with an "unavailable" error (a timeout, a node or
 * service that is gone, a 5xx from a dependency), rather than failing the read. A client
 * error (4xx: bad params, not found) is never masked.
 *
 * Where answers are kept: in this process's memory, as JSON in an LRU bounded in entries and
 * in characters (a page may be 200 KB, and every distinct query is an entry), and, when the
 * broker's cacher is shared (Redis), there too, so a replica can serve what another
 * replica answered; a memory cacher would only hold a second copy here. The served answer is marked with the response header
 * `X-Fallback: last-good` (through `ctx.meta.$responseHeaders`, which the gateway applies).
 *
 * It works from the service's action hooks, i.e. on the node that owns the action: it covers
 * the owner's own dependencies failing. When every node of the service is down, callers get
 * there by retrying on another replica (retryPolicy), not through this mixin.
 *
 * Usage: mixins: [ReadFallbackMixin({ actions: ["list", "get"] })]
 */

export interface ReadFallbackOptions {
  /** Action names of the service (without the service prefix). */
  actions: string[];
  /** How long an answer may be served after it was good (default one hour). */
  ttlSeconds?: number;
  /** Answers kept in memory per service (default 1000; the least recently used go first). */
  maxEntries?: number;
  /** Characters of their JSON kept in memory per service (default READ_FALLBACK_MAX_BYTES, 8 MB). */
  maxBytes?: number;
}

export const FALLBACK_HEADER = "X-Fallback";

interface Kept {
  at: number;
  data: unknown;
}

interface FallbackVars {
  /** Answers as JSON: one string per page instead of its object graph, measured as it is kept. */
  readFallbackMemory: Lru<string, { at: number; json: string }>;
}

/** Named so the action hooks can refer to them; the service gets them as methods. */
interface FallbackMethods {
  /** After hook: keeps a good answer. */
  readFallbackRemember(ctx: Context, res: unknown): Promise<unknown>;
  /** Error hook: the last good answer for an "unavailable" failure, or the error again. */
  readFallbackServe(ctx: GatewayContext, err: unknown): Promise<unknown>;
}

type FallbackThis = Service & FallbackMethods & FallbackVars;

/** True for errors that say "could not answer now", not "the request is wrong". */
export function isUnavailableError(err: unknown): boolean {
  const e = (err ?? {}) as { retryable?: unknown; code?: unknown };
  if (e.retryable === true) return true;
  const code = typeof e.code === "number" ? e.code : undefined;
  return code === undefined || code >= 500;
}

/** Same params → same key, whatever the order of their properties. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  if (value && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj)
      .filter(k => obj[k] !== undefined)
      .sort()
      .map(k => `${JSON.stringify(k)}:${stableJson(obj[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

export function fallbackKey(action: string, params: unknown): string {
  const hash = createHash("sha256").update(stableJson(params)).digest("base64url");
  return `readFallback:${action}:${hash}`;
}

export function ReadFallbackMixin(opts: ReadFallbackOptions): Partial<ServiceSchema> {
  const ttlMs = (opts.ttlSeconds ?? 3600) * 1000;
  const maxEntries = opts.maxEntries ?? 1000;
  const maxBytes = opts.maxBytes ?? envInt("READ_FALLBACK_MAX_BYTES", 8 * 1024 * 1024);
  // Hooks by method name (a Moleculer feature): the methods below get the service as `this`.
  const hooksOf = (method: keyof FallbackMethods) =>
    Object.fromEntries(opts.actions.map(name => [name, method]));

  return defineMixin<ServiceSettingSchema, FallbackMethods, FallbackVars>({
    hooks: { after: hooksOf("readFallbackRemember"), error: hooksOf("readFallbackServe") },

    methods: {
      async readFallbackRemember(ctx: Context, res: unknown): Promise<unknown> {
        if (res === undefined) return res;
        const key = fallbackKey(ctx.action?.name ?? "", ctx.params);
        this.readFallbackMemory.set(key, { at: Date.now(), json: JSON.stringify(res) });
        // Shared copy for the other replicas; a failing cacher must not fail the read.
        const cacher = this.broker.cacher;
        if (cacher instanceof Cachers.Redis) {
          cacher
            .set(key, { at: Date.now(), data: res }, Math.ceil(ttlMs / 1000))
            .catch((err: Error) =>
              this.logger.warn({ error: err.message }, "Read fallback not stored"),
            );
        }
        return res;
      },

      async readFallbackServe(ctx: GatewayContext, err: unknown): Promise<unknown> {
        if (!isUnavailableError(err)) throw err;
        const key = fallbackKey(ctx.action?.name ?? "", ctx.params);
        const mine = this.readFallbackMemory.get(key);
        let kept: Kept | null | undefined = mine && { at: mine.at, data: JSON.parse(mine.json) };
        if (!kept && this.broker.cacher) {
          kept = (await this.broker.cacher.get(key).catch(() => null)) as Kept | null;
        }
        if (!kept || Date.now() - kept.at > ttlMs) throw err;
        this.logger.warn(`${ctx.action?.name} failed; serving its last good answer`, {
          err: (err as Error).message,
          ageMs: Date.now() - kept.at,
        });
        ctx.meta.$responseHeaders = {
          ...ctx.meta.$responseHeaders,
          [FALLBACK_HEADER]: "last-good",
        };
        return kept.data;
      },
    } satisfies FallbackMethods & ThisType<FallbackThis>,

    created() {
      this.readFallbackMemory = new Lru({
        maxEntries,
        maxSize: maxBytes,
        sizeOf: kept => kept.json.length,
        ttlMs,
      });
    },
  });
}
