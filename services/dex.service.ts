import { repeat } from "../lib/shared/repeat";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { amountRule } from "../lib/shared/amount";
import { envInt } from "../lib/shared/env";
import { notFound } from "../lib/shared/errors";
import { DEX_COLLECTIONS, LiquidityPools, type Pool } from "../lib/dex/liquidity-pools";
import type { TransferInternalParams } from "../lib/tokens/contract";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * dex: liquidity pools (docs/architecture.md). A pool per token holds its liquidity on an account
 * of its own in the tokens ledger (`pool_<tokenId>`, which only this service may move
 * tokens in and out of: mixins/accounts.mixin.ts). Adding and removing liquidity are
 * internal (`public`): the launch saga calls them, each idempotent by key; clients read a
 * pool with GET /api/pools/:tokenId. The domain is lib/dex/liquidity-pools.ts.
 */

export interface AddLiquidityParams {
  tokenId: string;
  providerId: string;
  amount: string;
  /** Idempotency key, scoped to the calling service. */
  key: string;
}
export interface RemoveLiquidityParams {
  tokenId: string;
  /** The key the liquidity was added with: that addition goes back to its provider. */
  key: string;
}
export interface GetParams {
  tokenId: string;
}

interface DexSettings {
  /** Finished liquidity operations (and their keys) are forgotten after this (ms). */
  opsRetentionMs: number;
  /** How often they are pruned (ms; 0: never). */
  pruneIntervalMs: number;
}

interface DexVars {
  stopPruning: () => void;
}

export interface DexMethods {
  /** The engine, moving tokens through the ledger in this call's context. */
  pools(ctx?: Context): LiquidityPools;
}

type DexThis = Service<DexSettings> & DexMethods & DexVars & DbMethods & DbVars;

const idParam = { type: "string" as const, min: 1, max: 64 };
const keyParam = { type: "string" as const, min: 1, max: 200 };
/** Keys of different callers never meet. */
const scoped = (ctx: Context, key: string) => `${ctx.caller ?? "-"}:${key}`;

const DexService: ServiceSchema<DexSettings, DexMethods & DbMethods, DbVars & DexVars, DexThis> = {
  name: "dex",
  mixins: [DbMixin(DEX_COLLECTIONS)],

  settings: {
    // 7 days, as the tokens journal: far past any saga's retries and recovery.
    opsRetentionMs: envInt("DEX_OPS_RETENTION_MS", 7 * 24 * 3600_000),
    pruneIntervalMs: envInt("DEX_PRUNE_INTERVAL_MS", 10 * 60_000),
  },

  actions: {
    addLiquidity: {
      visibility: "public",
      params: {
        $$strict: "remove",
        tokenId: idParam,
        providerId: { type: "string", min: 1, max: 128 },
        amount: amountRule(),
        key: keyParam,
      },
      handler(ctx: Context<AddLiquidityParams>): Promise<Pool> {
        const { tokenId, providerId, amount, key } = ctx.params;
        return this.pools(ctx).add(tokenId, providerId, amount, scoped(ctx, key));
      },
    },

    removeLiquidity: {
      visibility: "public",
      params: { $$strict: "remove", tokenId: idParam, key: keyParam },
      async handler(ctx: Context<RemoveLiquidityParams>) {
        const pool = await this.pools(ctx).remove(ctx.params.tokenId, scoped(ctx, ctx.params.key));
        return { tokenId: ctx.params.tokenId, pool };
      },
    },

    get: {
      openapi: { summary: "A token's liquidity pool", response: schemas.Pool },
      params: { $$strict: "remove", tokenId: idParam },
      async handler(ctx: Context<GetParams>): Promise<Pool> {
        const pool = await this.pools(ctx).get(ctx.params.tokenId);
        if (!pool) throw notFound("Pool");
        return pool;
      },
    },
  },

  methods: {
    pools(ctx?: Context): LiquidityPools {
      return new LiquidityPools(this.database, async m => {
        if (!ctx) throw new Error("Moving tokens needs the calling context");
        const params: TransferInternalParams = {
          tokenId: m.tokenId,
          from: m.from,
          to: m.to,
          amount: m.amount,
          idempotencyKey: m.key,
        };
        // From this service's context: tokens accepts pool accounts from the dex only.
        await ctx.call("tokens.transferInternal", params);
      });
    },
  } satisfies DexMethods & ThisType<DexThis>,

  created() {
    this.stopPruning = () => undefined;
  },

  started() {
    this.stopPruning = repeat(
      this.settings.pruneIntervalMs,
      async () => {
        const before = new Date(Date.now() - this.settings.opsRetentionMs);
        const n = await this.pools().prune(before);
        if (n > 0) this.logger.info({ pruned: n }, "Liquidity operations pruned");
      },
      err => this.logger.warn({ err }, "Pruning liquidity operations failed"),
    );
  },

  stopped() {
    this.stopPruning();
  },
};

export default DexService;
