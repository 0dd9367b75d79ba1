import type { Context } from "moleculer";
import { nearCacheOf } from "../middlewares/near-cache.middleware";
import { defineMixin } from "./define";

/**
 * The gateway's side of its copy of catalog reads (middlewares/near-cache.middleware.ts):
 * when the catalog has applied a batch, the copies of those tokens and of every page go.
 */
export const NearCacheMixin = defineMixin({
  events: {
    "catalog.changed": {
      params: { tokenIds: { type: "array", items: "string", optional: true } },
      handler(ctx: Context<{ tokenIds?: string[] }>) {
        nearCacheOf(this.broker)?.changed(ctx.params.tokenIds ?? []);
      },
    },
  },
});
