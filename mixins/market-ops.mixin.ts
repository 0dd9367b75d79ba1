import type { Context, ServiceSettingSchema } from "moleculer";
import { defineMixin } from "./define";
import type { DbVars } from "./db.mixin";
import { idParam } from "../lib/shared/params";
import { ESCROW_ACCOUNT } from "../lib/events/market";
import { EscrowView, opsStatsOf, type MarketOpsStats } from "../lib/market/escrow-holdings";

/**
 * The market's part of the operator page (/ops, docs/observability.md): the escrow
 * account's balance per price token beside what the market says it holds, and the
 * auctions ending soonest. Its figures are lib/market/escrow-holdings.ts; the balances come
 * from tokens.balance. Mixed into the market service, whose store it reads.
 */

export interface OpsStatsParams {
  /** Auctions listed, soonest end first. */
  auctions: number;
  /** Price tokens shown even when the market holds nothing of theirs (a test's, a bench's). */
  tokens?: string[];
}

export const MarketOpsMixin = defineMixin<ServiceSettingSchema, Record<string, never>, DbVars>({
  actions: {
    // Internal (the operator page; tests and benches check the escrow with it).
    opsStats: {
      visibility: "public",
      params: {
        $$strict: "remove",
        auctions: {
          type: "number",
          integer: true,
          convert: true,
          min: 1,
          max: 50,
          optional: true,
          default: 10,
        },
        tokens: { type: "array", optional: true, max: 20, items: idParam },
      },
      async handler(ctx: Context<OpsStatsParams>): Promise<MarketOpsStats> {
        const view = new EscrowView(this.database);
        const [held, ending] = await Promise.all([
          view.holdings(ctx.params.tokens),
          view.endingSoon(ctx.params.auctions),
        ]);
        // After the holdings: a sale that ends between the two reads shows as a difference.
        const balances = new Map(
          await Promise.all(
            held.tokens.map(async t => {
              const amount = await ctx
                .call<{ amount: string }, { id: string; account: string }>("tokens.balance", {
                  id: t.tokenId,
                  account: ESCROW_ACCOUNT,
                })
                .then(
                  b => b.amount,
                  () => null, // tokens down, or the token gone: shown unknown, not a failed page
                );
              return [t.tokenId, amount] as const;
            }),
          ),
        );
        return opsStatsOf(ESCROW_ACCOUNT, held, balances, ending);
      },
    },
  },
});
