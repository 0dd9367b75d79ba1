import type { Context, Middleware, ServiceBroker } from "moleculer";
import { envInt } from "../lib/env";
import { NearCache } from "../lib/near-cache";

/**
 * Serves the catalog's reads (catalog.get, catalog.list) from the gateway's NearCache
 * (lib/near-cache.ts) when the catalog runs on another node. Only on a node that hosts the
 * gateway: its `catalog.changed` handler (services/api.service.ts) keeps the copy fresh,
 * and a node without that handler would serve stale answers for the whole TTL. A local
 * catalog needs none of this: its own cacher answers in-process.
 *
 * Answers are shared between callers and never copied: the gateway only serializes them.
 */

const caches = new WeakMap<ServiceBroker, NearCache>();

/** The broker's near cache, for the gateway's event handler; undefined when off. */
export function nearCacheOf(broker: ServiceBroker): NearCache | undefined {
  return caches.get(broker);
}

interface ActionDef {
  name: string;
}
type Handler = (ctx: Context) => Promise<unknown>;

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

    remoteAction(next: Handler, action: ActionDef): Handler {
      if (action.name === "catalog.get")
        return ctx => {
          if (!active) return next(ctx);
          const id = (ctx.params as { id?: unknown }).id;
          if (typeof id !== "string") return next(ctx);
          const hit = cache.getToken(id);
          if (hit !== undefined) return Promise.resolve(hit);
          const began = cache.begin();
          return next(ctx).then(res => {
            cache.storeToken(id, res, began);
            return res;
          });
        };
      if (action.name === "catalog.list")
        return ctx => {
          if (!active) return next(ctx);
          const key = JSON.stringify(ctx.params);
          const hit = cache.getList(key);
          if (hit !== undefined) return Promise.resolve(hit);
          const began = cache.begin();
          return next(ctx).then(res => {
            cache.storeList(key, res, began);
            return res;
          });
        };
      return next;
    },
  };
  // Moleculer's Middleware type does not list the handlers' action definition argument.
  return middleware as unknown as Middleware;
}
