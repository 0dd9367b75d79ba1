import type { Middleware, ServiceBroker } from "moleculer";
import { envInt } from "../lib/shared/env";
import { NearCache } from "../lib/gateway/near-cache";
import { defineMiddleware } from "../mixins/define";

/**
 * Serves the catalog's reads (catalog.get, catalog.list) from the gateway's NearCache
 * (lib/gateway/near-cache.ts), before a context is even made: a hit costs neither a NATS round trip
 * nor, with the catalog in the same process, the action's middlewares and its cacher's
 * deep copy. Only on a node that hosts the gateway: its `catalog.changed` handler
 * (services/api.service.ts) keeps the copy fresh, and a node without that handler would
 * serve stale answers for the whole TTL. A hit makes no span of its own (the request's
 * span is there) and counts no catalog request.
 *
 * Answers are shared between callers and never copied: the gateway only serializes them.
 */

const caches = new WeakMap<ServiceBroker, NearCache>();

/** The broker's near cache, for the gateway's event handler; undefined when off. */
export function nearCacheOf(broker: ServiceBroker): NearCache | undefined {
  return caches.get(broker);
}

/** broker.call (and ctx.call, which goes through it); moleculer-web passes an endpoint. */
type Call = (
  name: string | { action?: { name?: string } },
  params?: unknown,
  opts?: unknown,
) => Promise<unknown>;

export function NearCacheMiddleware(): Middleware {
  const cache = new NearCache({
    ttlMs: envInt("GATEWAY_CACHE_TTL_MS", 1000),
    maxEntries: envInt("GATEWAY_CACHE_MAX_ENTRIES", 1000),
    maxBytes: envInt("GATEWAY_CACHE_MAX_BYTES", 8 * 1024 * 1024),
    quietMs: envInt("GATEWAY_CACHE_QUIET_MS", 500),
  });
  let active = false;

  const middleware = {
    name: "NearCache",

    created(broker: ServiceBroker) {
      if (cache.enabled) caches.set(broker, cache);
    },

    started(broker: ServiceBroker) {
      active = cache.enabled && Boolean(broker.getLocalService("api"));
    },

    call(next: Call): Call {
      return (name, params, opts) => {
        if (!active) return next(name, params, opts);
        const action = typeof name === "string" ? name : name?.action?.name;
        // A hit answers at once; a miss asks and keeps the answer unless a change came meanwhile.
        const through = (
          get: (key: string) => unknown,
          keep: (key: string, value: unknown, began: number) => void,
          key: string,
        ): Promise<unknown> => {
          const hit = get(key);
          if (hit !== undefined) return Promise.resolve(hit);
          const began = cache.begin();
          return next(name, params, opts).then(res => {
            keep(key, res, began);
            return res;
          });
        };
        if (action === "catalog.get") {
          const id = (params as { id?: unknown } | undefined)?.id;
          if (typeof id !== "string") return next(name, params, opts);
          return through(
            k => cache.getToken(k),
            (k, v, b) => cache.storeToken(k, v, b),
            id,
          );
        }
        if (action === "catalog.list")
          return through(
            k => cache.getList(k),
            (k, v, b) => cache.storeList(k, v, b),
            JSON.stringify(params ?? {}),
          );
        return next(name, params, opts);
      };
    },
  };
  // Moleculer's Middleware type has no `call` hook with an endpoint for a name.
  return defineMiddleware(middleware);
}
