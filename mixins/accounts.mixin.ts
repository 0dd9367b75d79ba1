import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { BoundedMap } from "../lib/shared/bounded-map";
import { envInt } from "../lib/shared/env";
import { clientError, isNotFound } from "../lib/shared/errors";
import { isEscrowAccount } from "../lib/events/market";
import { isPoolAccount } from "../lib/dex/liquidity-pools";
import { defineMixin } from "./define";

/**
 * Accounts as docs/api.md takes them: a user id, or the 0x address of a wallet linked to a
 * user, which means that user. Resolved by users.resolveAccount and remembered briefly;
 * `users.walletsChanged` makes every node forget the addresses of a user at once.
 *
 * A pool's account (`pool_<tokenId>`, lib/dex/liquidity-pools.ts) is no user's: it is read
 * like any account (its balance, its place among the holders), but only the services in
 * `poolServices` (the dex) may move tokens to or from it; to anyone else, the gateway's
 * callers included, it is an unknown account. Nobody can sign in as a pool, so nobody
 * can spend from it or approve a spender of it. The market's escrow (`escrow_market`,
 * lib/events/market.ts) is kept the same way, for `escrowServices` (the market and the sagas that
 * run its sales).
 */

export interface AccountsSettings extends ServiceSettingSchema {
  /** How long a resolved account is trusted without asking users again. */
  accountTtlMs: number;
  /** The services whose calls may name a pool's account as `from` or `to`. */
  poolServices: string[];
  /** The services whose calls may name the market's escrow as `from` or `to`. */
  escrowServices: string[];
}

export interface AccountsMethods {
  /** The user id behind `account`; 404 naming the request field when there is none. */
  resolveAccount(ctx: Context, account: string, field: string): Promise<string>;
  /** The user id behind `account`, or null. */
  findAccount(ctx: Context, account: string): Promise<string | null>;
}

interface AccountsVars {
  accountCache: BoundedMap<string, { id: string; until: number }>;
}

export const AccountsMixin: Partial<ServiceSchema> = defineMixin<
  AccountsSettings,
  AccountsMethods,
  AccountsVars
>({
  settings: {
    accountTtlMs: envInt("ACCOUNT_TTL_MS", 30_000),
    poolServices: ["dex"],
    escrowServices: ["market", "sagas"],
  },

  events: {
    /** A wallet was linked or unlinked: addresses resolved to this user may be stale. */
    "users.walletsChanged": {
      params: { userId: { type: "string", min: 1, max: 64 } },
      handler(ctx: Context<{ userId: string }>) {
        for (const [account, hit] of this.accountCache) {
          if (hit.id === ctx.params.userId && account !== hit.id) this.accountCache.delete(account);
        }
      },
    },
  },

  methods: {
    async resolveAccount(ctx: Context, account: string, field: string): Promise<string> {
      const caller = ctx.caller ?? "";
      const hidden =
        (isPoolAccount(account) && !this.settings.poolServices.includes(caller)) ||
        (isEscrowAccount(account) && !this.settings.escrowServices.includes(caller));
      const id = hidden ? null : await this.findAccount(ctx, account);
      if (!id) {
        throw clientError("NOT_FOUND", `Account '${account}' (${field}) not found`, [
          { field, message: "unknown account" },
        ]);
      }
      return id;
    },

    async findAccount(ctx: Context, account: string): Promise<string | null> {
      // The dex's and the market's own accounts: users knows nothing of them.
      if (isPoolAccount(account) || isEscrowAccount(account)) return account;
      const hit = this.accountCache.get(account);
      if (hit && hit.until > Date.now()) return hit.id;
      try {
        const res = await ctx.call<{ id: string }, { account: string }>("users.resolveAccount", {
          account,
        });
        this.accountCache.set(account, {
          id: res.id,
          until: Date.now() + this.settings.accountTtlMs,
        });
        return res.id;
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    },
  } satisfies AccountsMethods &
    ThisType<AccountsMethods & AccountsVars & { settings: AccountsSettings }>,

  created() {
    this.accountCache = new BoundedMap(100_000);
  },
});
