import type { Context, Service, ServiceSchema } from "moleculer";
import type { DbMethods, DbVars } from "../mixins/db.mixin";
import { storesWithOutbox, type OutboxMethods, type OutboxVars } from "../mixins/outbox.mixin";
import { amountRule } from "../lib/shared/amount";
import { Campaigns, MARKETING_COLLECTIONS, type Campaign } from "../lib/marketing/campaigns";
import { isNotFound, notFound } from "../lib/shared/errors";

/**
 * marketing: a token's promotion campaign (docs/architecture.md), on or off. Both changes are
 * idempotent (the launch saga activates, and deactivates when it undoes a launch) and
 * internal (`public`); each goes out as marketing.activated / marketing.deactivated
 * through this service's outbox, and the catalog makes an active campaign's token
 * `featured`. The domain is lib/marketing/campaigns.ts.
 */

export interface ActivateParams {
  tokenId: string;
  /** Base units the creator means to spend. */
  budget?: string;
}
export interface TokenParams {
  tokenId: string;
}

interface MarketingVars {
  campaigns: Campaigns;
}

interface MarketingMethods {
  /** 404 unless the token exists (tokens.get is there for services like this one). */
  requireToken(ctx: Context, tokenId: string): Promise<void>;
}

type MarketingThis = Service &
  MarketingVars &
  MarketingMethods &
  DbMethods &
  DbVars &
  OutboxMethods &
  OutboxVars;

const idParam = { type: "string" as const, min: 1, max: 64 };

const MarketingService: ServiceSchema<
  Record<string, never>,
  MarketingMethods & DbMethods & OutboxMethods,
  DbVars & OutboxVars & MarketingVars,
  MarketingThis
> = {
  name: "marketing",
  mixins: [...storesWithOutbox(MARKETING_COLLECTIONS)],

  actions: {
    activate: {
      visibility: "public",
      params: { $$strict: "remove", tokenId: idParam, budget: amountRule({ optional: true }) },
      async handler(ctx: Context<ActivateParams>): Promise<Campaign> {
        await this.requireToken(ctx, ctx.params.tokenId);
        return this.campaigns.activate(ctx.params.tokenId, ctx.params.budget ?? null);
      },
    },

    deactivate: {
      visibility: "public",
      params: { $$strict: "remove", tokenId: idParam },
      handler(ctx: Context<TokenParams>): Promise<Campaign> {
        // No token check: undoing a launch may come after its token is gone.
        return this.campaigns.deactivate(ctx.params.tokenId);
      },
    },

    get: {
      visibility: "public",
      params: { $$strict: "remove", tokenId: idParam },
      handler(ctx: Context<TokenParams>): Promise<Campaign> {
        return this.campaigns.get(ctx.params.tokenId);
      },
    },
  },

  methods: {
    async requireToken(ctx: Context, tokenId: string): Promise<void> {
      try {
        await ctx.call("tokens.get", { id: tokenId });
      } catch (err) {
        // Only "no such token" is a 404; tokens being down must stay retryable.
        if (isNotFound(err)) throw notFound("Token");
        throw err;
      }
    },
  } satisfies MarketingMethods & ThisType<MarketingThis>,

  started() {
    this.campaigns = new Campaigns(this.database, this.openOutbox());
    this.outbox.start();
  },
};

export default MarketingService;
