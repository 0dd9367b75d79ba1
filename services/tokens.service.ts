import {
  accountParam,
  idParam,
  nameParam,
  pageParams,
  symbolParam,
  tokenMetadataProps,
} from "../lib/shared/params";
import { repeat } from "../lib/shared/repeat";
import type { Context, Service, ServiceSchema } from "moleculer";
import type { DbMethods, DbSettings, DbVars } from "../mixins/db.mixin";
import { storesWithOutbox, type OutboxMethods, type OutboxVars } from "../mixins/outbox.mixin";
import {
  AccountsMixin,
  type AccountsMethods,
  type AccountsSettings,
} from "../mixins/accounts.mixin";
import { amountRule } from "../lib/shared/amount";
import { envInt } from "../lib/shared/env";
import type { Token, TokenApproved, TokenMetadata } from "../lib/events/domain";
import type { OutboxStats } from "../lib/messaging/outbox";
import type { TransferInternalParams } from "../lib/tokens/contract";
import { TransferEngine } from "../lib/tokens/transfer-engine";
import { TokenRegistry, toToken, type NewToken } from "../lib/tokens/token-registry";
import { TOKENS_COLLECTIONS, type TransferRecord } from "../lib/tokens/ledger";
import { callerKey } from "../lib/shared/caller-key";
import { created, requireUserId, type GatewayContext } from "../lib/shared/context";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * tokens: the write model of fungible tokens (ERC-20 semantics). The domain lives in
 * lib/: TokenRegistry (tokens, metadata, approvals) and TransferEngine (journaled,
 * idempotent transfers, each one transaction of this service's database); both write
 * their events to this service's outbox before an action answers (docs/architecture.md rule 2–4). This file holds
 * the actions' params, account resolution (a call to users) and the wiring.
 */

interface TokensOwnSettings {
  /** Done and failed transfers are forgotten after this (ms): longer than any retry window. */
  journalRetentionMs: number;
  /** How often the journal is pruned (ms). */
  pruneIntervalMs: number;
}

/** What `this.settings` holds: the service's own and its mixins'. */
type TokensSettings = TokensOwnSettings & AccountsSettings & DbSettings;

interface TokensVars {
  registry: TokenRegistry;
  engine: TransferEngine;
  stopSweep: () => void;
}

interface TokensMethods {
  buildEngines(): void;
  sweep(): Promise<void>;
}

type TokensThis = Service<TokensSettings> &
  TokensMethods &
  TokensVars &
  DbMethods &
  DbVars &
  OutboxVars &
  OutboxMethods &
  AccountsMethods;

export type CreateParams = NewToken;
export interface UpdateMetadataParams extends TokenMetadata {
  id: string;
}
export interface IdParams {
  id: string;
}
export interface BalanceParams {
  id: string;
  account: string;
}
export interface ListParams {
  limit: number;
  offset: number;
}
export interface HoldersParams extends ListParams {
  id: string;
}
export interface AllowanceParams {
  id: string;
  owner: string;
  spender: string;
}
export interface TransferParams {
  id: string;
  to: string;
  amount: string;
}
export interface TransferFromParams extends TransferParams {
  from: string;
}
export type { TransferInternalParams };
export interface ApproveParams {
  id: string;
  spender: string;
  amount: string;
}

const metadataProps = tokenMetadataProps;
const transferLocation = (rec: TransferRecord): string =>
  `/api/tokens/${rec.tokenId}/transfers/${rec.id}`;

const TokensService: ServiceSchema<
  TokensOwnSettings,
  TokensMethods & DbMethods & OutboxMethods & AccountsMethods,
  DbVars & OutboxVars & TokensVars,
  TokensThis
> = {
  name: "tokens",
  mixins: [...storesWithOutbox(TOKENS_COLLECTIONS), AccountsMixin],

  settings: {
    // 7 days: far past the gateway's idempotency window (24 h) and JetStream's redelivery.
    journalRetentionMs: envInt("JOURNAL_RETENTION_MS", 7 * 24 * 3600_000),
    pruneIntervalMs: envInt("JOURNAL_PRUNE_INTERVAL_MS", 10 * 60_000),
  },

  actions: {
    create: {
      openapi: { summary: "Create a token", status: 201, response: schemas.Token },
      params: {
        $$strict: "remove",
        name: nameParam,
        symbol: symbolParam,
        decimals: { type: "number", integer: true, min: 0, max: 18 },
        initialSupply: amountRule(),
        metadata: { type: "object", optional: true, strict: "remove", props: metadataProps },
      },
      async handler(ctx: GatewayContext<CreateParams>): Promise<Token> {
        const doc = await this.registry.create(requireUserId(ctx), callerKey(ctx), ctx.params);
        return created(ctx, `/api/tokens/${doc._id}`, toToken(doc));
      },
    },

    updateMetadata: {
      openapi: {
        summary: "Change a token's metadata (its creator)",
        response: schemas.Token,
        errors: [403],
      },
      params: { $$strict: "remove", id: idParam, ...metadataProps },
      async handler(ctx: GatewayContext<UpdateMetadataParams>): Promise<Token> {
        const { id, ...changes } = ctx.params;
        return toToken(await this.registry.updateMetadata(id, requireUserId(ctx), changes));
      },
    },

    /**
     * Internal: a transfer from the journal (null when unknown or past its retention), so
     * the activity service answers a transfer's Location before it has recorded it.
     */
    journaledTransfer: {
      visibility: "public",
      params: { $$strict: "remove", id: idParam, transferId: idParam },
      handler(ctx: Context<{ id: string; transferId: string }>): Promise<TransferRecord | null> {
        return this.engine.journaled(ctx.params.id, ctx.params.transferId);
      },
    },

    get: {
      visibility: "public",
      params: { id: idParam },
      async handler(ctx: Context<IdParams>): Promise<Token> {
        return toToken(await this.registry.require(ctx.params.id));
      },
    },

    balance: {
      openapi: { summary: "An account's balance (exact)", response: schemas.Balance },
      params: { $$strict: "remove", id: idParam, account: accountParam },
      async handler(ctx: Context<BalanceParams>) {
        await this.registry.require(ctx.params.id);
        const account = await this.findAccount(ctx, ctx.params.account);
        return {
          tokenId: ctx.params.id,
          account: account ?? ctx.params.account,
          amount: account ? await this.engine.balance(ctx.params.id, account) : "0",
        };
      },
    },

    holders: {
      openapi: {
        summary: "A token's holders, largest first",
        response: schemas.page(schemas.Holder),
      },
      params: { $$strict: "remove", id: idParam, ...pageParams },
      async handler(ctx: Context<HoldersParams>) {
        await this.registry.require(ctx.params.id);
        return this.registry.holders(ctx.params.id, ctx.params.limit, ctx.params.offset);
      },
    },

    allowance: {
      openapi: {
        summary: "What a spender may spend of an owner's",
        response: schemas.AllowanceAmount,
      },
      params: { $$strict: "remove", id: idParam, owner: accountParam, spender: accountParam },
      async handler(ctx: Context<AllowanceParams>) {
        await this.registry.require(ctx.params.id);
        const [owner, spender] = await Promise.all([
          this.findAccount(ctx, ctx.params.owner),
          this.findAccount(ctx, ctx.params.spender),
        ]);
        if (!owner || !spender) return { amount: "0" };
        return { amount: await this.registry.allowance(ctx.params.id, owner, spender) };
      },
    },

    myBalances: {
      openapi: {
        summary: "The caller's non-zero balances",
        response: schemas.page(schemas.MyBalance),
      },
      params: { $$strict: "remove", ...pageParams },
      handler(ctx: GatewayContext<ListParams>) {
        const { limit, offset } = ctx.params;
        return this.registry.balancesOf(requireUserId(ctx), limit, offset);
      },
    },

    transfer: {
      openapi: { summary: "Transfer", status: 201, response: schemas.Transfer, errors: [422] },
      params: { $$strict: "remove", id: idParam, to: accountParam, amount: amountRule() },
      async handler(ctx: GatewayContext<TransferParams>): Promise<TransferRecord> {
        const from = requireUserId(ctx);
        const to = await this.resolveAccount(ctx, ctx.params.to, "to");
        const rec = await this.engine.run({
          kind: "transfer",
          tokenId: ctx.params.id,
          from,
          to,
          amount: ctx.params.amount,
          spender: null,
          key: callerKey(ctx),
        });
        return created(ctx, transferLocation(rec), rec);
      },
    },

    transferFrom: {
      openapi: {
        summary: "Transfer from an owner, spending the caller's allowance",
        status: 201,
        response: schemas.Transfer,
        errors: [422],
      },
      params: {
        $$strict: "remove",
        id: idParam,
        from: accountParam,
        to: accountParam,
        amount: amountRule(),
      },
      async handler(ctx: GatewayContext<TransferFromParams>): Promise<TransferRecord> {
        const spender = requireUserId(ctx);
        const [from, to] = await Promise.all([
          this.resolveAccount(ctx, ctx.params.from, "from"),
          this.resolveAccount(ctx, ctx.params.to, "to"),
        ]);
        const rec = await this.engine.run({
          kind: "transferFrom",
          tokenId: ctx.params.id,
          from,
          to,
          amount: ctx.params.amount,
          spender,
          key: callerKey(ctx),
        });
        return created(ctx, transferLocation(rec), rec);
      },
    },

    /**
     * Internal: moves tokens on behalf of `from` (sagas, dex). The key is required and
     * scoped to the calling service, so a saga's retry or recovery cannot pay twice.
     */
    transferInternal: {
      visibility: "public",
      params: {
        $$strict: "remove",
        tokenId: idParam,
        from: accountParam,
        to: accountParam,
        amount: amountRule(),
        idempotencyKey: { type: "string", min: 1, max: 255 },
      },
      async handler(ctx: Context<TransferInternalParams>): Promise<TransferRecord> {
        const [from, to] = await Promise.all([
          this.resolveAccount(ctx, ctx.params.from, "from"),
          this.resolveAccount(ctx, ctx.params.to, "to"),
        ]);
        return this.engine.run({
          kind: "transfer",
          tokenId: ctx.params.tokenId,
          from,
          to,
          amount: ctx.params.amount,
          spender: null,
          key: `svc:${ctx.caller ?? "-"}:${ctx.params.idempotencyKey}`,
        });
      },
    },

    approve: {
      openapi: { summary: "Set a spender's allowance", response: schemas.Allowance },
      params: { $$strict: "remove", id: idParam, spender: accountParam, amount: amountRule() },
      async handler(ctx: GatewayContext<ApproveParams>): Promise<TokenApproved> {
        const owner = requireUserId(ctx);
        const spender = await this.resolveAccount(ctx, ctx.params.spender, "spender");
        return this.registry.approve(ctx.params.id, owner, spender, ctx.params.amount);
      },
    },

    /** Internal (saga compensation): removes a token and everything of it. Idempotent. */
    delete: {
      visibility: "public",
      params: { id: idParam },
      async handler(ctx: Context<IdParams>) {
        await this.registry.delete(ctx.params.id);
        return { id: ctx.params.id, deleted: true };
      },
    },

    /** Internal: what the relay has left to send (operations and tests). */
    outboxStats: {
      visibility: "public",
      params: {},
      async handler(): Promise<OutboxStats> {
        return this.outbox.stats();
      },
    },
  },

  methods: {
    /** The engines over this service's database and outbox (also how a test rewires a twin). */
    buildEngines() {
      const outbox = this.openOutbox();
      this.registry = new TokenRegistry(this.database, outbox, this.logger);
      this.engine = new TransferEngine(this.database, outbox, this.registry, {
        retentionMs: this.settings.journalRetentionMs,
      });
    },

    /**
     * Periodic: the journal past its retention. Nothing else needs a sweep: every change
     * committed whole or not at all, and the outbox sends what a crash left unsent.
     */
    async sweep() {
      const pruned = await this.engine.prune();
      if (pruned > 0) this.logger.info({ pruned }, "Journal pruned");
    },
  } satisfies TokensMethods & ThisType<TokensThis>,

  created() {
    this.stopSweep = () => undefined;
  },

  async started() {
    this.buildEngines();
    this.outbox.start();
    this.stopSweep = repeat(
      this.settings.pruneIntervalMs,
      () => this.sweep(),
      err => this.logger.warn({ err }, "Journal prune failed"),
    );
  },

  stopped() {
    this.stopSweep();
  },
};

export default TokensService;
