import type { Token } from "../events/domain";
import type { Pool } from "../dex/liquidity-pools";
import type { Campaign } from "../marketing/campaigns";
import type { SagaDefinition, StepInput } from "./saga-definition";
import { stepKey } from "./saga-log";
import type { NewToken } from "../tokens/token-registry";

/**
 * The token launch of docs/api.md as a saga (lib/sagas/saga-engine.ts): create the token, move
 * `liquidity.amount` of it from the creator into its pool, activate its marketing. When
 * a step fails, the finished ones are undone last first: marketing off, the liquidity
 * back to the creator, the token deleted (its symbol free again), so the creator ends as
 * before. Each call is idempotent by its step's key; each undo is harmless when its step
 * did nothing.
 */

export interface LaunchInput {
  token: NewToken;
  liquidity: { amount: string };
  marketing?: { budget?: string };
}

export interface LaunchResult {
  token: Token;
  pool: Pool;
  campaign: Campaign;
}

export const LAUNCH = "launch";

const tokenOf = (s: StepInput<LaunchInput>): Token => {
  const token = s.results.createToken as Token | undefined;
  if (!token) throw new Error(`Launch ${s.sagaId} has no token yet`);
  return token;
};

export const LAUNCH_SAGA: SagaDefinition<LaunchInput> = {
  type: LAUNCH,
  steps: [
    {
      name: "createToken",
      // Keyed by meta.idempotencyKey (tokens' callerKey), created for the user in meta.
      action: "tokens.create",
      params: s => ({ ...s.input.token }),
      meta: s => ({ user: { id: s.userId } }),
      compensate: {
        action: "tokens.delete",
        params: (_s, result) => ({ id: (result as Token).id }),
        // Without the token's id there is nothing to delete: ask tokens.create again.
        needsResult: true,
      },
    },
    {
      name: "addLiquidity",
      action: "dex.addLiquidity",
      params: s => ({
        tokenId: tokenOf(s).id,
        providerId: s.userId,
        amount: s.input.liquidity.amount,
        key: s.key,
      }),
      compensate: {
        action: "dex.removeLiquidity",
        // What the add's key put in, whether or not it arrived (an add still on its way is refused).
        params: s => ({ tokenId: tokenOf(s).id, key: stepKey(s.sagaId, "addLiquidity") }),
      },
    },
    {
      name: "activateMarketing",
      action: "marketing.activate",
      params: s => ({
        tokenId: tokenOf(s).id,
        ...(s.input.marketing?.budget !== undefined ? { budget: s.input.marketing.budget } : {}),
      }),
      compensate: {
        action: "marketing.deactivate",
        params: s => ({ tokenId: tokenOf(s).id }),
      },
    },
  ],
  result: r => ({ token: r.createToken, pool: r.addLiquidity, campaign: r.activateMarketing }),
};
