import type { Context, ServiceSchema } from "moleculer";
import { DbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { DuplicateKeyError, type Doc } from "../lib/store";
import {
  OUTBOX_COLLECTION,
  OutboxMixin,
  type OutboxMethods,
  type OutboxStats,
} from "../mixins/outbox.mixin";
import {
  ClientError,
  businessError,
  conflict,
  forbidden,
  notFound,
  unauthorized,
} from "../lib/errors";
import { amountRule, amountSortKey, checkedAdd, checkedSub, formatAmount } from "../lib/amount";
import { envInt, envStr } from "../lib/env";
import {
  TOKEN_EVENTS,
  type BalanceAfter,
  type DomainEvent,
  type Token,
  type TokenApproved,
  type TokenCreated,
  type TokenDeleted,
  type TokenMetadata,
  type TokenTransferred,
  type TokenUpdated,
} from "../lib/events";
import {
  KeyedMutex,
  allowanceId,
  balanceId,
  fingerprint,
  toTransferRecord,
  type AllowanceDoc,
  type BalanceDoc,
  type JournalDoc,
  type OpMarker,
  type TransferRecord,
} from "../lib/ledger";
import { newId } from "../lib/ids";
import type { AuthUser } from "../lib/jwt";

/**
 * tokens: the write model of fungible tokens (ERC-20 semantics). Balances change only
 * by compare-and-set on their `version` (rule 4); transfers are journaled before any
 * balance moves and keyed for idempotency (rule 3); every change writes its event to
 * the outbox before the action answers (rule 2). `started` finishes whatever a crash
 * interrupted, so the sum of balances equals the supply again.
 */

type TokenState = "creating" | "active" | "deleting";

/** A stored token: the API's Token (its `id` is `_id`) plus the write model's own fields. */
interface TokenDoc extends Doc, Omit<Token, "id"> {
  state: TokenState;
  version: number;
  /** Idempotency key of the create call: a retry finds its own token behind the taken symbol. */
  createKey: string;
  /** Set in the same write as a change whose event is not yet in the outbox. */
  unpublished?: boolean;
}

type Meta = {
  user?: AuthUser | null;
  idempotencyKey?: string;
  $statusCode?: number;
  $location?: string;
};

interface TransferRequest {
  kind: JournalDoc["kind"];
  tokenId: string;
  from: string;
  to: string;
  amount: string;
  spender: string | null;
  key: string;
}

interface TokensSettings {
  /** Pending journal entries younger than this are left to the process running them. */
  recoveryGraceMs: number;
  recoveryIntervalMs: number;
}

interface TokensVars {
  balanceLocks: KeyedMutex;
  /** Balances last seen by this process; a stale one only costs a CAS miss. */
  balanceCache: Map<string, BalanceDoc>;
  tokenCache: Map<string, TokenDoc>;
  accountCache: Map<string, { id: string; until: number }>;
  /** Transfers of this process in flight, by idempotency key. */
  inflight: Map<string, { fp: string; done: Promise<TransferRecord> }>;
  /** Journal ids this process is applying now. */
  running: Set<string>;
  /** Journal ids whose event is in the outbox and whose `done` is not written yet. */
  completing: Set<string>;
  /** Journal ids whose `done` is written: their markers may go. */
  settled: Map<string, true>;
  doneQueue: string[];
  doneFlush: Promise<void> | null;
  recoveryTimer: NodeJS.Timeout | null;
}

interface TokensMethods {
  requireUserId(ctx: Context<unknown, Meta>): string;
  resolveAccount(ctx: Context, account: string, field: string): Promise<string>;
  findAccount(ctx: Context, account: string): Promise<string | null>;
  activeToken(id: string, fresh?: boolean): Promise<TokenDoc | null>;
  requireToken(id: string): Promise<TokenDoc>;
  toToken(doc: TokenDoc): Token;
  finishCreate(doc: TokenDoc): Promise<TokenDoc>;
  finishDelete(doc: TokenDoc): Promise<void>;
  publishTokenChange(doc: TokenDoc, type: "created" | "updated"): Promise<void>;
  callerKey(ctx: Context<unknown, Meta>): string;
  readBalance(id: string, fresh: boolean): Promise<BalanceDoc | null>;
  changeBalance(
    tokenId: string,
    account: string,
    delta: bigint,
    journalId: string,
    marker: OpMarker,
  ): Promise<BalanceDoc | null>;
  markerCleanup(ops: Record<string, OpMarker>): Promise<Record<string, true>>;
  spendAllowance(j: JournalDoc): Promise<boolean>;
  refundAllowance(j: JournalDoc): Promise<void>;
  runTransfer(req: TransferRequest): Promise<TransferRecord>;
  replay(req: TransferRequest, fp: string): Promise<TransferRecord>;
  applyTransfer(j: JournalDoc): Promise<TransferRecord>;
  failTransfer(j: JournalDoc, err: ClientError): Promise<never>;
  completeTransfer(j: JournalDoc, balances: BalanceAfter[]): Promise<TransferRecord>;
  balancesAfter(j: JournalDoc): Promise<BalanceAfter[]>;
  settle(journalId: string): void;
  flushDone(): Promise<void>;
  recover(graceMs: number): Promise<void>;
  recoverTransfer(j: JournalDoc): Promise<void>;
}

type Methods = TokensMethods & DbMethods & OutboxMethods;

const mongo = Boolean(envStr("MONGO_URI"));
const ACCOUNT_TTL_MS = 30_000;
const CACHE_LIMIT = 100_000;

const accountParam = { type: "string" as const, trim: true, min: 1, max: 128 };
const idParam = { type: "string" as const, min: 1, max: 64 };
const listParams = {
  limit: {
    type: "number" as const,
    integer: true,
    convert: true,
    min: 1,
    max: 100,
    optional: true,
  },
  offset: { type: "number" as const, integer: true, convert: true, min: 0, optional: true },
};
const metadataProps = {
  description: { type: "string" as const, max: 1000, optional: true },
  imageUrl: { type: "url" as const, max: 2048, optional: true },
  website: { type: "url" as const, max: 2048, optional: true },
};

const eventOf = <T>(type: DomainEvent["type"], id: string, data: T): DomainEvent<T> => ({
  eventId: `${type}:${id}`,
  type,
  occurredAt: new Date().toISOString(),
  data,
});

const after = (b: BalanceDoc | null, account: string): BalanceAfter =>
  b
    ? { account: b.account, amount: b.amount, version: b.version }
    : { account, amount: "0", version: 0 };

const isNotFound = (err: unknown): boolean => (err as { code?: number }).code === 404;

function boundedSet<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= CACHE_LIMIT && !map.has(key)) {
    const oldest = map.keys().next().value;
    if (oldest !== undefined) map.delete(oldest);
  }
  map.set(key, value);
}

const TokensService: ServiceSchema<TokensSettings, Methods, DbVars & TokensVars> = {
  name: "tokens",
  mixins: [
    DbMixin({
      tokens: { unique: ["symbol"], indexes: ["creatorId", "state"] },
      balances: { indexes: ["tokenId", "account"] },
      allowances: { indexes: ["tokenId"] },
      journal: { unique: ["key"], indexes: ["state"] },
      ...OUTBOX_COLLECTION,
    }),
    OutboxMixin({ intervalMs: envInt("OUTBOX_INTERVAL_MS", 1000) }),
  ],

  settings: {
    // NeDB files have one writer (db.mixin locks DATA_DIR): whatever is pending at start
    // is orphaned. On MongoDB other replicas may be mid-transfer: leave young entries.
    recoveryGraceMs: envInt("TOKENS_RECOVERY_GRACE_MS", mongo ? 60_000 : 0),
    recoveryIntervalMs: envInt("TOKENS_RECOVERY_INTERVAL_MS", mongo ? 30_000 : 0),
  },

  actions: {
    create: {
      params: {
        $$strict: "remove",
        name: { type: "string", trim: true, min: 1, max: 64 },
        symbol: { type: "string", pattern: /^[A-Z0-9]{2,11}$/ },
        decimals: { type: "number", integer: true, min: 0, max: 18 },
        initialSupply: amountRule(),
        metadata: { type: "object", optional: true, strict: "remove", props: metadataProps },
      },
      async handler(
        ctx: Context<
          {
            name: string;
            symbol: string;
            decimals: number;
            initialSupply: string;
            metadata?: TokenMetadata;
          },
          Meta
        >,
      ) {
        const creatorId = this.requireUserId(ctx);
        const createKey = this.callerKey(ctx);
        const p = ctx.params;
        const doc: TokenDoc = {
          _id: newId("tok"),
          name: p.name,
          symbol: p.symbol,
          decimals: p.decimals,
          totalSupply: p.initialSupply,
          creatorId,
          metadata: { ...p.metadata },
          createdAt: new Date().toISOString(),
          state: "creating",
          version: 1,
          createKey,
        };
        let created: TokenDoc;
        try {
          // The unique index on symbol decides races between two creators.
          await this.store<TokenDoc>("tokens").insert(doc);
          created = await this.finishCreate(doc);
        } catch (err) {
          if (!(err instanceof DuplicateKeyError)) throw err;
          const existing = await this.store<TokenDoc>("tokens").findOne({ symbol: p.symbol });
          if (!existing || existing.createKey !== createKey || existing.state === "deleting") {
            throw conflict("Symbol is already taken", [
              { field: "symbol", message: "already taken" },
            ]);
          }
          // The same create again (a retry): finish and answer it like the first time.
          created = await this.finishCreate(existing);
        }
        this.logger.info({ tokenId: created._id, symbol: created.symbol }, "Token created");
        ctx.meta.$statusCode = 201;
        ctx.meta.$location = `/api/tokens/${created._id}`;
        return this.toToken(created);
      },
    },

    updateMetadata: {
      params: {
        $$strict: "remove",
        id: idParam,
        ...metadataProps,
      },
      async handler(ctx: Context<{ id: string } & TokenMetadata, Meta>) {
        const userId = this.requireUserId(ctx);
        const tokens = this.store<TokenDoc>("tokens");
        for (;;) {
          const doc = await this.requireToken(ctx.params.id);
          if (doc.creatorId !== userId) throw forbidden("Only the creator may change the metadata");
          const metadata: TokenMetadata = { ...doc.metadata };
          for (const k of ["description", "imageUrl", "website"] as const) {
            if (ctx.params[k] !== undefined) metadata[k] = ctx.params[k];
          }
          const updated = await tokens.updateOne(
            { _id: doc._id, version: doc.version, state: "active" },
            { $set: { metadata, version: doc.version + 1, unpublished: true } },
          );
          if (!updated) {
            this.tokenCache.delete(doc._id);
            continue; // changed meanwhile: read again
          }
          this.tokenCache.set(updated._id, updated);
          await this.publishTokenChange(updated, "updated");
          return this.toToken(updated);
        }
      },
    },

    get: {
      visibility: "public",
      params: { id: idParam },
      async handler(ctx: Context<{ id: string }>) {
        return this.toToken(await this.requireToken(ctx.params.id));
      },
    },

    balance: {
      params: { $$strict: "remove", id: idParam, account: accountParam },
      async handler(ctx: Context<{ id: string; account: string }>) {
        await this.requireToken(ctx.params.id);
        const account = await this.findAccount(ctx, ctx.params.account);
        const doc = account
          ? await this.readBalance(balanceId(ctx.params.id, account), true)
          : null;
        return {
          tokenId: ctx.params.id,
          account: account ?? ctx.params.account,
          amount: doc?.amount ?? "0",
        };
      },
    },

    holders: {
      params: { $$strict: "remove", id: idParam, ...listParams },
      async handler(ctx: Context<{ id: string; limit?: number; offset?: number }>) {
        await this.requireToken(ctx.params.id);
        const query = { tokenId: ctx.params.id, amount: { $ne: "0" } };
        const balances = this.store<BalanceDoc>("balances");
        const [rows, total] = await Promise.all([
          balances.find(query, {
            sort: { sortKey: -1, account: 1 },
            limit: ctx.params.limit ?? 20,
            offset: ctx.params.offset ?? 0,
          }),
          balances.count(query),
        ]);
        return { rows: rows.map(b => ({ account: b.account, amount: b.amount })), total };
      },
    },

    allowance: {
      params: { $$strict: "remove", id: idParam, owner: accountParam, spender: accountParam },
      async handler(ctx: Context<{ id: string; owner: string; spender: string }>) {
        await this.requireToken(ctx.params.id);
        const [owner, spender] = await Promise.all([
          this.findAccount(ctx, ctx.params.owner),
          this.findAccount(ctx, ctx.params.spender),
        ]);
        if (!owner || !spender) return { amount: "0" };
        const doc = await this.store<AllowanceDoc>("allowances").findOne({
          _id: allowanceId(ctx.params.id, owner, spender),
        });
        return { amount: doc?.amount ?? "0" };
      },
    },

    myBalances: {
      params: { $$strict: "remove", ...listParams },
      async handler(ctx: Context<{ limit?: number; offset?: number }, Meta>) {
        const userId = this.requireUserId(ctx);
        const query = { account: userId, amount: { $ne: "0" } };
        const balances = this.store<BalanceDoc>("balances");
        const [docs, total] = await Promise.all([
          balances.find(query, {
            sort: { tokenId: 1 },
            limit: ctx.params.limit ?? 20,
            offset: ctx.params.offset ?? 0,
          }),
          balances.count(query),
        ]);
        const rows = [];
        for (const b of docs) {
          const token = await this.activeToken(b.tokenId);
          if (token) rows.push({ tokenId: b.tokenId, symbol: token.symbol, amount: b.amount });
        }
        return { rows, total };
      },
    },

    transfer: {
      params: { $$strict: "remove", id: idParam, to: accountParam, amount: amountRule() },
      async handler(ctx: Context<{ id: string; to: string; amount: string }, Meta>) {
        const from = this.requireUserId(ctx);
        const to = await this.resolveAccount(ctx, ctx.params.to, "to");
        const rec = await this.runTransfer({
          kind: "transfer",
          tokenId: ctx.params.id,
          from,
          to,
          amount: ctx.params.amount,
          spender: null,
          key: this.callerKey(ctx),
        });
        ctx.meta.$statusCode = 201;
        ctx.meta.$location = `/api/tokens/${rec.tokenId}/transfers/${rec.id}`;
        return rec;
      },
    },

    transferFrom: {
      params: {
        $$strict: "remove",
        id: idParam,
        from: accountParam,
        to: accountParam,
        amount: amountRule(),
      },
      async handler(ctx: Context<{ id: string; from: string; to: string; amount: string }, Meta>) {
        const spender = this.requireUserId(ctx);
        const [from, to] = await Promise.all([
          this.resolveAccount(ctx, ctx.params.from, "from"),
          this.resolveAccount(ctx, ctx.params.to, "to"),
        ]);
        const rec = await this.runTransfer({
          kind: "transferFrom",
          tokenId: ctx.params.id,
          from,
          to,
          amount: ctx.params.amount,
          spender,
          key: this.callerKey(ctx),
        });
        ctx.meta.$statusCode = 201;
        ctx.meta.$location = `/api/tokens/${rec.tokenId}/transfers/${rec.id}`;
        return rec;
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
      async handler(
        ctx: Context<{
          tokenId: string;
          from: string;
          to: string;
          amount: string;
          idempotencyKey: string;
        }>,
      ) {
        const [from, to] = await Promise.all([
          this.resolveAccount(ctx, ctx.params.from, "from"),
          this.resolveAccount(ctx, ctx.params.to, "to"),
        ]);
        return this.runTransfer({
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
      params: { $$strict: "remove", id: idParam, spender: accountParam, amount: amountRule() },
      async handler(ctx: Context<{ id: string; spender: string; amount: string }, Meta>) {
        const owner = this.requireUserId(ctx);
        const spender = await this.resolveAccount(ctx, ctx.params.spender, "spender");
        const token = await this.requireToken(ctx.params.id);
        const store = this.store<AllowanceDoc>("allowances");
        const id = allowanceId(token._id, owner, spender);
        let doc: AllowanceDoc | null = null;
        while (!doc) {
          const cur = await store.findOne({ _id: id });
          if (cur) {
            doc = await store.updateOne(
              { _id: id, version: cur.version },
              { $set: { amount: ctx.params.amount, version: cur.version + 1, unpublished: true } },
            );
          } else {
            const fresh: AllowanceDoc = {
              _id: id,
              tokenId: token._id,
              owner,
              spender,
              amount: ctx.params.amount,
              version: 1,
              ops: {},
              unpublished: true,
            };
            try {
              doc = await store.insert(fresh);
            } catch (err) {
              if (!(err instanceof DuplicateKeyError)) throw err;
            }
          }
        }
        const data: TokenApproved = { tokenId: token._id, owner, spender, amount: doc.amount };
        await this.outboxWrite([eventOf(TOKEN_EVENTS.approved, `${id}:${doc.version}`, data)]);
        // The event is in the outbox: the flag may go (a lost clear only re-sends it).
        void store
          .update({ _id: id, version: doc.version }, { $unset: { unpublished: true } })
          .catch(() => undefined);
        return data;
      },
    },

    /** Internal (saga compensation): removes a token and everything of it. Idempotent. */
    delete: {
      visibility: "public",
      params: { id: idParam },
      async handler(ctx: Context<{ id: string }>) {
        const tokens = this.store<TokenDoc>("tokens");
        const doc = await tokens.updateOne({ _id: ctx.params.id }, { $set: { state: "deleting" } });
        this.tokenCache.delete(ctx.params.id);
        if (doc) await this.finishDelete(doc);
        return { id: ctx.params.id, deleted: true };
      },
    },

    /** Internal: what the relay has left to send (operations and tests). */
    outboxStats: {
      visibility: "public",
      params: {},
      async handler(): Promise<OutboxStats> {
        return this.outboxStats();
      },
    },
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
    requireUserId(ctx: Context<unknown, Meta>): string {
      const id = ctx.meta.user?.id;
      if (!id) throw unauthorized();
      return id;
    },

    /** A user id or a linked wallet's 0x address → the user id; 404 naming the field. */
    async resolveAccount(ctx: Context, account: string, field: string): Promise<string> {
      const id = await this.findAccount(ctx, account);
      if (!id) {
        throw new ClientError(`Account '${account}' (${field}) not found`, 404, "NOT_FOUND", [
          { field, message: "unknown account" },
        ]);
      }
      return id;
    },

    async findAccount(ctx: Context, account: string): Promise<string | null> {
      const hit = this.accountCache.get(account);
      if (hit && hit.until > Date.now()) return hit.id;
      try {
        const res = (await ctx.call("users.resolveAccount", { account })) as { id: string };
        boundedSet(this.accountCache, account, { id: res.id, until: Date.now() + ACCOUNT_TTL_MS });
        return res.id;
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    },

    async activeToken(id: string, fresh = false): Promise<TokenDoc | null> {
      if (!fresh) {
        const hit = this.tokenCache.get(id);
        if (hit) return hit;
      }
      const doc = await this.store<TokenDoc>("tokens").findOne({ _id: id });
      if (!doc || doc.state !== "active") {
        this.tokenCache.delete(id);
        return null;
      }
      boundedSet(this.tokenCache, id, doc);
      return doc;
    },

    async requireToken(id: string): Promise<TokenDoc> {
      const doc = await this.activeToken(id, true);
      if (!doc) throw notFound("Token");
      return doc;
    },

    toToken(doc: TokenDoc): Token {
      return {
        id: doc._id,
        name: doc.name,
        symbol: doc.symbol,
        decimals: doc.decimals,
        totalSupply: doc.totalSupply,
        creatorId: doc.creatorId,
        metadata: doc.metadata,
        createdAt: doc.createdAt,
      };
    },

    /** Creator's balance, then the event, then the token goes active: each step idempotent. */
    async finishCreate(doc: TokenDoc): Promise<TokenDoc> {
      if (doc.state !== "creating") return doc;
      const bal: BalanceDoc = {
        _id: balanceId(doc._id, doc.creatorId),
        tokenId: doc._id,
        account: doc.creatorId,
        amount: doc.totalSupply,
        sortKey: amountSortKey(doc.totalSupply),
        version: 1,
        ops: {},
      };
      try {
        await this.store<BalanceDoc>("balances").insert(bal);
      } catch (err) {
        if (!(err instanceof DuplicateKeyError)) throw err;
      }
      await this.publishTokenChange(doc, "created");
      const active =
        (await this.store<TokenDoc>("tokens").updateOne(
          { _id: doc._id, state: "creating" },
          { $set: { state: "active" } },
        )) ?? (await this.store<TokenDoc>("tokens").findOne({ _id: doc._id }));
      if (!active || active.state !== "active") throw notFound("Token");
      boundedSet(this.tokenCache, active._id, active);
      return active;
    },

    async finishDelete(doc: TokenDoc): Promise<void> {
      await this.store("balances").remove({ tokenId: doc._id });
      await this.store("allowances").remove({ tokenId: doc._id });
      for (const key of this.balanceCache.keys())
        if (key.startsWith(`${doc._id}:`)) this.balanceCache.delete(key);
      const data: TokenDeleted = { tokenId: doc._id };
      await this.outboxWrite([eventOf(TOKEN_EVENTS.deleted, doc._id, data)]);
      await this.store("tokens").remove({ _id: doc._id, state: "deleting" });
      this.logger.info({ tokenId: doc._id }, "Token deleted");
    },

    /** Writes the event of the token's current version and clears its `unpublished` flag. */
    async publishTokenChange(doc: TokenDoc, type: "created" | "updated"): Promise<void> {
      const token = this.toToken(doc);
      if (type === "created") {
        const data: TokenCreated = {
          token,
          balances: [{ account: doc.creatorId, amount: doc.totalSupply, version: 1 }],
        };
        await this.outboxWrite([eventOf(TOKEN_EVENTS.created, doc._id, data)]);
        return;
      }
      const data: TokenUpdated = { token };
      await this.outboxWrite([eventOf(TOKEN_EVENTS.updated, `${doc._id}:${doc.version}`, data)]);
      await this.store("tokens").update(
        { _id: doc._id, version: doc.version },
        { $unset: { unpublished: true } },
      );
    },

    /**
     * The idempotency key of a state-changing call, scoped to its caller: the gateway's
     * Idempotency-Key ("<user>:<key>"); else the HTTP request (a broker retry of the
     * gateway's call keeps its parent id); else none that repeats.
     */
    callerKey(ctx: Context<unknown, Meta>): string {
      if (ctx.meta.idempotencyKey) return `key:${ctx.meta.idempotencyKey}`;
      if (ctx.caller === "api" && ctx.parentID) return `req:${ctx.parentID}`;
      return `once:${newId("k")}`;
    },

    async readBalance(id: string, fresh: boolean): Promise<BalanceDoc | null> {
      if (!fresh) {
        const hit = this.balanceCache.get(id);
        if (hit) return hit;
      }
      const doc = await this.store<BalanceDoc>("balances").findOne({ _id: id });
      if (doc) boundedSet(this.balanceCache, id, doc);
      else this.balanceCache.delete(id);
      return doc;
    },

    /**
     * Adds `delta` (negative: debit) to a balance by compare-and-set on its version,
     * writing the journal marker in the same write. Null when the balance is too small.
     */
    async changeBalance(
      tokenId: string,
      account: string,
      delta: bigint,
      journalId: string,
      marker: OpMarker,
    ): Promise<BalanceDoc | null> {
      const id = balanceId(tokenId, account);
      const store = this.store<BalanceDoc>("balances");
      return this.balanceLocks.run(id, async () => {
        let fresh = false;
        for (;;) {
          const cur = await this.readBalance(id, fresh);
          const have = BigInt(cur?.amount ?? "0");
          const next = delta < 0n ? checkedSub(have, -delta) : checkedAdd(have, delta);
          if (next === null) {
            if (!fresh) {
              fresh = true; // a cached balance may be behind another process's credit
              continue;
            }
            return null;
          }
          const amount = formatAmount(next);
          if (!cur) {
            const doc: BalanceDoc = {
              _id: id,
              tokenId,
              account,
              amount,
              sortKey: amountSortKey(amount),
              version: 1,
              ops: { [journalId]: marker },
            };
            try {
              await store.insert(doc);
              boundedSet(this.balanceCache, id, doc);
              return doc;
            } catch (err) {
              if (!(err instanceof DuplicateKeyError)) throw err;
              fresh = true;
              continue;
            }
          }
          const unset = await this.markerCleanup(cur.ops);
          const update: Record<string, unknown> = {
            $set: {
              amount,
              sortKey: amountSortKey(amount),
              version: cur.version + 1,
              [`ops.${journalId}`]: marker,
            },
          };
          if (Object.keys(unset).length > 0) update.$unset = unset;
          const doc = await store.updateOne({ _id: id, version: cur.version }, update);
          if (doc) {
            boundedSet(this.balanceCache, id, doc);
            return doc;
          }
          fresh = true; // CAS miss: someone else wrote it; read again and retry
        }
      });
    },

    /** Markers of settled journals, to unset in the next write of their balance. */
    async markerCleanup(ops: Record<string, OpMarker>): Promise<Record<string, true>> {
      const unset: Record<string, true> = {};
      const unknown: string[] = [];
      for (const jid of Object.keys(ops ?? {})) {
        if (this.settled.has(jid)) unset[`ops.${jid}`] = true;
        else unknown.push(jid);
      }
      // Markers left by a previous run (or another replica): ask the journal. A
      // pending entry's markers stay: recovery needs them.
      const foreign = unknown.filter(jid => !this.running.has(jid) && !this.completing.has(jid));
      if (foreign.length > 0) {
        const docs = await this.store<JournalDoc>("journal").find({
          _id: { $in: foreign },
          state: { $ne: "pending" },
        });
        for (const j of docs) {
          boundedSet(this.settled, j._id, true);
          unset[`ops.${j._id}`] = true;
        }
      }
      return unset;
    },

    /** Takes `amount` from the spender's allowance (CAS, with a marker). False when too small. */
    async spendAllowance(j: JournalDoc): Promise<boolean> {
      const store = this.store<AllowanceDoc>("allowances");
      const id = allowanceId(j.tokenId, j.from, j.spender ?? "");
      for (;;) {
        const cur = await store.findOne({ _id: id });
        const left = cur ? checkedSub(BigInt(cur.amount), BigInt(j.amount)) : null;
        if (!cur || left === null) return false;
        const unset = await this.markerCleanup(cur.ops);
        const doc = await store.updateOne(
          { _id: id, version: cur.version },
          {
            $set: {
              amount: formatAmount(left),
              version: cur.version + 1,
              [`ops.${j._id}`]: "s",
            },
            ...(Object.keys(unset).length > 0 ? { $unset: unset } : {}),
          },
        );
        if (doc) return true;
      }
    },

    /** Gives back what `spendAllowance` took for `j`, once: guarded by its marker. */
    async refundAllowance(j: JournalDoc): Promise<void> {
      const store = this.store<AllowanceDoc>("allowances");
      const id = allowanceId(j.tokenId, j.from, j.spender ?? "");
      for (;;) {
        const cur = await store.findOne({ _id: id });
        if (!cur || cur.ops?.[j._id] !== "s") return;
        const amount = formatAmount(checkedAdd(BigInt(cur.amount), BigInt(j.amount)));
        const doc = await store.updateOne(
          { _id: id, version: cur.version },
          { $set: { amount, version: cur.version + 1 }, $unset: { [`ops.${j._id}`]: true } },
        );
        if (doc) return;
      }
    },

    /** Journal first (claims the idempotency key), then the balances, then the event. */
    async runTransfer(req: TransferRequest): Promise<TransferRecord> {
      const fp = fingerprint([req.kind, req.tokenId, req.from, req.to, req.amount, req.spender]);
      const local = this.inflight.get(req.key);
      if (local) {
        if (local.fp !== fp) throw conflict("Idempotency key was already used for another request");
        return local.done;
      }
      if (!(await this.activeToken(req.tokenId))) throw notFound("Token");
      const j: JournalDoc = {
        _id: newId("trf"),
        key: req.key,
        fingerprint: fp,
        kind: req.kind,
        tokenId: req.tokenId,
        from: req.from,
        to: req.to,
        amount: req.amount,
        spender: req.spender,
        state: "pending",
        error: null,
        createdAt: new Date().toISOString(),
      };
      try {
        await this.store<JournalDoc>("journal").insert(j);
      } catch (err) {
        if (err instanceof DuplicateKeyError) return this.replay(req, fp);
        throw err;
      }
      this.running.add(j._id);
      const done = this.applyTransfer(j);
      this.inflight.set(req.key, { fp, done });
      try {
        return await done;
      } finally {
        this.inflight.delete(req.key);
        this.running.delete(j._id);
      }
    },

    /** A key seen before: the first outcome, whatever it was. */
    async replay(req: TransferRequest, fp: string): Promise<TransferRecord> {
      const j = await this.store<JournalDoc>("journal").findOne({ key: req.key });
      if (!j) return this.runTransfer(req); // dropped by recovery meanwhile: run it
      if (j.fingerprint !== fp)
        throw conflict("Idempotency key was already used for another request");
      const local = this.inflight.get(req.key);
      if (local) return local.done;
      if (j.state === "failed" && j.error) throw businessError(j.error.type, j.error.message);
      if (
        j.state === "done" ||
        this.completing.has(j._id) ||
        (await this.outboxHas(`${TOKEN_EVENTS.transferred}:${j._id}`))
      )
        return toTransferRecord(j);
      // Its `done` may have been written since `j` was read (and its event published).
      const now = await this.store<JournalDoc>("journal").findOne({ _id: j._id });
      if (now?.state === "done") return toTransferRecord(now);
      throw conflict("A transfer with this idempotency key is in progress");
    },

    async applyTransfer(j: JournalDoc): Promise<TransferRecord> {
      const amount = BigInt(j.amount);
      if (j.kind === "transferFrom" && !(await this.spendAllowance(j))) {
        return this.failTransfer(
          j,
          businessError("INSUFFICIENT_ALLOWANCE", "The allowance is smaller than the amount"),
        );
      }
      const insufficient = async () => {
        if (j.kind === "transferFrom") await this.refundAllowance(j);
        if (!(await this.activeToken(j.tokenId, true)))
          return this.failTransfer(j, notFound("Token"));
        return this.failTransfer(
          j,
          businessError("INSUFFICIENT_FUNDS", "The balance is smaller than the amount"),
        );
      };
      if (j.from === j.to || amount === 0n) {
        // Nothing moves, but the rules of a transfer still apply.
        const cur = await this.readBalance(balanceId(j.tokenId, j.from), true);
        if (BigInt(cur?.amount ?? "0") < amount) return insufficient();
        return this.completeTransfer(j, await this.balancesAfter(j));
      }
      const debited = await this.changeBalance(j.tokenId, j.from, -amount, j._id, "d");
      if (!debited) return insufficient();
      const credited = await this.changeBalance(j.tokenId, j.to, amount, j._id, "c");
      return this.completeTransfer(j, [after(debited, j.from), after(credited, j.to)]);
    },

    async failTransfer(j: JournalDoc, err: ClientError): Promise<never> {
      await this.store<JournalDoc>("journal").updateOne(
        { _id: j._id },
        { $set: { state: "failed", error: { type: err.type, message: err.message } } },
      );
      throw err;
    },

    async completeTransfer(j: JournalDoc, balances: BalanceAfter[]): Promise<TransferRecord> {
      const rec = toTransferRecord(j);
      const data: TokenTransferred = {
        transferId: j._id,
        tokenId: j.tokenId,
        from: j.from,
        to: j.to,
        amount: j.amount,
        createdAt: j.createdAt,
        balances,
      };
      await this.outboxWrite([eventOf(TOKEN_EVENTS.transferred, j._id, data)]);
      this.settle(j._id);
      return rec;
    },

    async balancesAfter(j: JournalDoc): Promise<BalanceAfter[]> {
      const accounts = j.from === j.to ? [j.from] : [j.from, j.to];
      const out: BalanceAfter[] = [];
      for (const a of accounts)
        out.push(after(await this.readBalance(balanceId(j.tokenId, a), true), a));
      return out;
    },

    /**
     * The transfer's event is in the outbox: it is complete. Its journal entry becomes
     * `done` in a batched write; only then may its markers go (with the next write of
     * each balance), since until then they are what recovery goes by: the outbox entry
     * itself is deleted once published.
     */
    settle(journalId: string): void {
      this.completing.add(journalId);
      this.doneQueue.push(journalId);
      if (!this.doneFlush) {
        this.doneFlush = new Promise<void>(resolve => setImmediate(resolve)).then(() =>
          this.flushDone(),
        );
      }
    },

    async flushDone(): Promise<void> {
      try {
        while (this.doneQueue.length > 0) {
          const ids = this.doneQueue.splice(0, 1000);
          try {
            await this.store<JournalDoc>("journal").update(
              { _id: { $in: ids }, state: "pending" },
              { $set: { state: "done" } },
            );
            for (const id of ids) boundedSet(this.settled, id, true);
          } finally {
            for (const id of ids) this.completing.delete(id);
          }
        }
      } catch (err) {
        // Still pending, markers kept: recovery completes them again (consumers dedupe).
        this.logger.warn({ err }, "Marking journal entries done failed");
      } finally {
        this.doneFlush = null;
      }
    },

    /** Finishes what a crash interrupted: tokens half created or deleted, events not yet in the outbox, transfers. */
    async recover(graceMs: number): Promise<void> {
      const tokens = this.store<TokenDoc>("tokens");
      for (const doc of await tokens.find({ state: "creating" })) await this.finishCreate(doc);
      for (const doc of await tokens.find({ state: "deleting" })) await this.finishDelete(doc);
      for (const doc of await tokens.find({ unpublished: true }))
        await this.publishTokenChange(doc, "updated");
      const allowances = this.store<AllowanceDoc>("allowances");
      for (const a of await allowances.find({ unpublished: true })) {
        const data: TokenApproved = {
          tokenId: a.tokenId,
          owner: a.owner,
          spender: a.spender,
          amount: a.amount,
        };
        await this.outboxWrite([eventOf(TOKEN_EVENTS.approved, `${a._id}:${a.version}`, data)]);
        await allowances.update(
          { _id: a._id, version: a.version },
          { $unset: { unpublished: true } },
        );
      }
      const before = new Date(Date.now() - graceMs).toISOString();
      const pending = await this.store<JournalDoc>("journal").find({
        state: "pending",
        createdAt: { $lte: before },
      });
      for (const j of pending) {
        if (this.inflight.has(j.key)) continue;
        await this.recoverTransfer(j);
      }
      if (pending.length > 0)
        this.logger.info({ count: pending.length }, "Recovered unfinished transfers");
    },

    /**
     * One unfinished transfer. Its markers tell which steps happened: debited and
     * credited → only the event is missing; debited only → credit it (the debit proved
     * the funds); not debited → nothing moved (an allowance spent is given back) and the
     * entry goes, so a retry with the key runs it anew. The client was not answered yet.
     */
    async recoverTransfer(j: JournalDoc): Promise<void> {
      const journal = this.store<JournalDoc>("journal");
      if (await this.outboxHas(`${TOKEN_EVENTS.transferred}:${j._id}`)) {
        this.settle(j._id);
        return;
      }
      const amount = BigInt(j.amount);
      const moves = j.from !== j.to && amount !== 0n;
      const from = await this.readBalance(balanceId(j.tokenId, j.from), true);
      const debited = moves && from?.ops?.[j._id] === "d";
      if (!debited) {
        if (j.kind === "transferFrom") await this.refundAllowance(j);
        await journal.remove({ _id: j._id, state: "pending" });
        return;
      }
      const to = await this.readBalance(balanceId(j.tokenId, j.to), true);
      if (to?.ops?.[j._id] !== "c") await this.changeBalance(j.tokenId, j.to, amount, j._id, "c");
      await this.completeTransfer(j, await this.balancesAfter(j));
    },
  },

  created() {
    this.balanceLocks = new KeyedMutex();
    this.balanceCache = new Map();
    this.tokenCache = new Map();
    this.accountCache = new Map();
    this.inflight = new Map();
    this.running = new Set();
    this.completing = new Set();
    this.settled = new Map();
    this.doneQueue = [];
    this.doneFlush = null;
    this.recoveryTimer = null;
  },

  async started() {
    await this.recover(this.settings.recoveryGraceMs);
    await this.doneFlush;
    await this.outboxStart();
    // With replicas on one MongoDB, a node that died is recovered by the survivors.
    const every = this.settings.recoveryIntervalMs;
    if (every > 0) {
      const tick = () => {
        this.recover(this.settings.recoveryGraceMs)
          .catch(err => this.logger.warn({ err }, "Recovery sweep failed"))
          .finally(() => {
            if (this.recoveryTimer) this.recoveryTimer = setTimeout(tick, every);
          });
      };
      this.recoveryTimer = setTimeout(tick, every);
    }
  },

  async stopped() {
    if (this.recoveryTimer) clearTimeout(this.recoveryTimer);
    this.recoveryTimer = null;
    await this.doneFlush;
  },
};

export default TokensService;
