import type { Context, ServiceSchema } from "moleculer";
import { CATALOG_GET_PARAMS, CATALOG_LIST_PARAMS } from "../lib/read-models/catalog-params";
import { ReadFallbackMixin } from "../mixins/read-fallback.mixin";

/**
 * catalog v2: a canary of the catalog API beside v1 (the unversioned `catalog`). With
 * `version: 2` Moleculer registers its actions as `v2.catalog.list` / `v2.catalog.get`;
 * every answer carries `catalogVersion: 2`, so a client can tell which version answered.
 * The gateway's TrafficMixin sends it a weighted share (CANARY="catalog:v1=90,v2=10") and
 * every request with `x-version: v2`.
 *
 * It is thin on purpose: same params as v1 (lib/read-models/catalog-params.ts), answers read from v1's
 * read model through v1's actions. It owns no store and consumes no events, so it can run
 * anywhere, any number of times: in the all-services process of `npm run serve` (where a
 * second NeDB catalog on DATA_DIR/catalog would share v1's files) as in a process of its own.
 * A v2 that changes the read model itself would mix in the whole catalog schema and need its
 * own database and consumer group (see the issue-4 report).
 *
 * When v1 cannot answer (down, timing out), v2 serves the last good answer it gave for the
 * same params (ReadFallbackMixin), marked with `X-Fallback: last-good`.
 */

export const CATALOG_VERSION = 2;

const CatalogV2Service: ServiceSchema = {
  name: "catalog",
  version: CATALOG_VERSION,
  mixins: [ReadFallbackMixin({ actions: ["list", "get"] })],

  actions: {
    list: {
      params: CATALOG_LIST_PARAMS,
      async handler(ctx: Context<Record<string, unknown>>) {
        const res = await ctx.call<Record<string, unknown>, unknown>("catalog.list", ctx.params);
        return { ...res, catalogVersion: CATALOG_VERSION };
      },
    },
    get: {
      params: CATALOG_GET_PARAMS,
      async handler(ctx: Context<Record<string, unknown>>) {
        const res = await ctx.call<Record<string, unknown>, unknown>("catalog.get", ctx.params);
        return { ...res, catalogVersion: CATALOG_VERSION };
      },
    },
  },
};

export default CatalogV2Service;
