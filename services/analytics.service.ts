import type { Context, ServiceSchema } from "moleculer";
import { DbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import {
  cacheTtlFromSettings,
  ReadModelMixin,
  type ReadModelChannel,
  type ReadModelMethods,
  type ReadModelSettings,
  type ReadModelThis,
  type ReadModelVars,
} from "../mixins/read-model.mixin";
import { APPLIED_COLLECTION } from "../lib/read-models/applied-events";
import {
  ANALYTICS_COLLECTIONS,
  AnalyticsCounters,
  COUNTERS,
  GLOBAL_ID,
} from "../lib/read-models/analytics-counters";
import { envInt } from "../lib/shared/env";
import { ANALYTICS_RULES, type AnalyticsSummary } from "../lib/read-models/read-model";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * analytics: platform statistics behind GET /api/analytics/summary, from a consumer
 * group on the domain channels, counted exactly once in effect, also across restarts.
 * The counting is lib/read-models/analytics-counters.ts; the channels, batches and the
 * transaction that counts a batch and records its eventIds together are
 * mixins/read-model.mixin.ts. Adding a counted channel is one entry in ANALYTICS_RULES.
 */

export interface AnalyticsSettings extends ReadModelSettings {
  /** Seconds a summary may be served from cache (0: never cached). */
  cacheTtl: number;
}

/** The summary takes no params. */
export type SummaryParams = Record<string, never>;

interface AnalyticsVars {
  counters: AnalyticsCounters;
}

/**
 * Every event changes the global counters: all channels share one batch key, so what
 * arrives together, whatever its channel, changes each counter document in one write.
 */
const counted: ReadModelChannel<ReadModelThis & AnalyticsVars> = {
  key: () => GLOBAL_ID,
  apply(fresh, tx) {
    return new AnalyticsCounters(tx.store(COUNTERS)).count(fresh);
  },
};

const AnalyticsService: ServiceSchema<
  AnalyticsSettings,
  ReadModelMethods & DbMethods,
  AnalyticsVars & ReadModelVars & DbVars
> = {
  name: "analytics",
  mixins: [
    DbMixin({ ...ANALYTICS_COLLECTIONS, ...APPLIED_COLLECTION }),
    ReadModelMixin<AnalyticsVars>({
      channels: Object.fromEntries(Object.keys(ANALYTICS_RULES).map(c => [c, counted])),
    }),
  ],

  settings: {
    readModel: {
      group: "analytics",
      // Counting does not depend on the order of events; only what arrives together can
      // share a batch.
      maxInFlight: Object.fromEntries(
        Object.keys(ANALYTICS_RULES).map(c => [c, envInt("ANALYTICS_IN_FLIGHT", 200)]),
      ),
    },
    cacheTtl: envInt("ANALYTICS_CACHE_TTL", 2),
  },

  /** The summary's cache TTL is a setting; this is where it can still go in (see there). */
  merged(schema) {
    const ttl = schema.settings?.cacheTtl;
    cacheTtlFromSettings(schema, ["summary"], ttl !== undefined && ttl > 0 ? ttl : false);
  },

  actions: {
    summary: {
      openapi: { summary: "Platform counters", response: schemas.AnalyticsSummary },
      params: { $$strict: "remove" },
      cache: true, // its TTL is a setting: see merged()
      handler(_ctx: Context<SummaryParams>): Promise<AnalyticsSummary> {
        return this.counters.summary();
      },
    },
  },

  /** Runs after DbMixin's `started` (mixins first) and before the channels subscribe. */
  started() {
    this.counters = new AnalyticsCounters(this.store(COUNTERS));
  },
};

export default AnalyticsService;
