import { conflict, forbidden, notFound } from "../shared/errors";
import { amountSortKey } from "../shared/amount";
import {
  TOKEN_EVENTS,
  domainEvent,
  type Token,
  type TokenApproved,
  type TokenCreated,
  type TokenDeleted,
  type TokenMetadata,
  type TokenUpdated,
} from "../events/domain";
import { BoundedMap } from "../shared/bounded-map";
import { allowanceId, balanceId, type AllowanceDoc, type BalanceDoc } from "./ledger";
import { newId } from "../shared/ids";
import { publishThenClear, type OutboxWriter } from "../messaging/outbox";
import { insertIfAbsent, type Doc, type Store } from "../store/store";
import type { TokenLookup } from "./transfer-engine";

/**
 * Tokens themselves (create, metadata, delete) and allowances (approve): every change
 * writes its event to the outbox before it is answered, and each multi-step change is a
 * state on the token (`creating`, `deleting`) or an `unpublished` flag, so `recover()`
 * finishes whatever a crash interrupted. No broker in here (see TransferEngine).
 */

type TokenState = "creating" | "active" | "deleting";

/** A stored token: the API's Token (its `id` is `_id`) plus the write model's own fields. */
export interface TokenDoc extends Doc, Omit<Token, "id"> {
  state: TokenState;
  version: number;
  /** Idempotency key of the create call: a retry finds its own token behind the taken symbol. */
  createKey: string;
  /** Set in the same write as a change whose event is not yet in the outbox. */
  unpublished?: boolean;
}

export interface TokenStores {
  tokens: Store<TokenDoc>;
  balances: Store<BalanceDoc>;
  allowances: Store<AllowanceDoc>;
}

export interface Page<T> {
  rows: T[];
  total: number;
}

export interface Holding {
  account: string;
  amount: string;
}

export interface AccountBalance {
  tokenId: string;
  symbol: string;
  amount: string;
}

export interface NewToken {
  name: string;
  symbol: string;
  decimals: number;
  initialSupply: string;
  metadata?: TokenMetadata;
}

interface RegistryLogger {
  info(obj: object, msg: string): void;
}

const CACHE_LIMIT = 100_000;
const METADATA_FIELDS = ["description", "imageUrl", "website"] as const;

export function toToken(doc: TokenDoc): Token {
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
}

export class TokenRegistry implements TokenLookup {
  private readonly cache = new BoundedMap<string, TokenDoc>(CACHE_LIMIT);

  constructor(
    private readonly stores: TokenStores,
    private readonly outbox: OutboxWriter,
    private readonly logger: RegistryLogger,
    /** Called when a token is deleted, so caches of its balances forget it. */
    private readonly onDeleted: (tokenId: string) => void = () => undefined,
  ) {}

  /** The creator holds the whole supply; a retry with the same key answers the same token. */
  async create(creatorId: string, createKey: string, p: NewToken): Promise<TokenDoc> {
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
    // The unique index on symbol decides races between two creators.
    if (await insertIfAbsent(this.stores.tokens, doc)) return this.finishCreate(doc);
    const existing = await this.stores.tokens.findOne({ symbol: p.symbol });
    if (!existing || existing.createKey !== createKey || existing.state === "deleting") {
      throw conflict("Symbol is already taken", [{ field: "symbol", message: "already taken" }]);
    }
    // The same create again (a retry): finish and answer it like the first time.
    return this.finishCreate(existing);
  }

  /** Sets the given metadata fields; only the creator may. */
  async updateMetadata(id: string, userId: string, changes: TokenMetadata): Promise<TokenDoc> {
    for (;;) {
      const doc = await this.require(id);
      if (doc.creatorId !== userId) throw forbidden("Only the creator may change the metadata");
      const metadata: TokenMetadata = { ...doc.metadata };
      for (const k of METADATA_FIELDS) if (changes[k] !== undefined) metadata[k] = changes[k];
      const updated = await this.stores.tokens.updateOne(
        { _id: doc._id, version: doc.version, state: "active" },
        { $set: { metadata, version: doc.version + 1, unpublished: true } },
      );
      if (!updated) {
        this.cache.delete(doc._id);
        continue; // changed meanwhile: read again
      }
      this.cache.set(updated._id, updated);
      await this.publishUpdate(updated);
      return updated;
    }
  }

  /** Sets (not adds) what `spender` may move of `owner`'s balance. */
  async approve(
    tokenId: string,
    owner: string,
    spender: string,
    amount: string,
  ): Promise<TokenApproved> {
    const token = await this.require(tokenId);
    const store = this.stores.allowances;
    const id = allowanceId(token._id, owner, spender);
    let doc: AllowanceDoc | null = null;
    while (!doc) {
      const cur = await store.findOne({ _id: id });
      if (cur) {
        doc = await store.updateOne(
          { _id: id, version: cur.version },
          { $set: { amount, version: cur.version + 1, unpublished: true } },
        );
        continue;
      }
      const fresh: AllowanceDoc = {
        _id: id,
        tokenId: token._id,
        owner,
        spender,
        amount,
        version: 1,
        ops: {},
        unpublished: true,
      };
      if (await insertIfAbsent(store, fresh)) doc = fresh;
    }
    return this.publishApproval(doc);
  }

  /** Removes a token and everything of it (saga compensation). Idempotent. */
  async delete(id: string): Promise<void> {
    const doc = await this.stores.tokens.updateOne({ _id: id }, { $set: { state: "deleting" } });
    this.cache.delete(id);
    if (doc) await this.finishDelete(doc);
  }

  async isActive(id: string, fresh = false): Promise<boolean> {
    return (await this.active(id, fresh)) !== null;
  }

  /** The live token, from this process's cache unless `fresh`; null when absent or not active. */
  async active(id: string, fresh = false): Promise<TokenDoc | null> {
    if (!fresh) {
      const hit = this.cache.get(id);
      if (hit) return hit;
    }
    const doc = await this.stores.tokens.findOne({ _id: id });
    if (!doc || doc.state !== "active") {
      this.cache.delete(id);
      return null;
    }
    this.cache.set(id, doc);
    return doc;
  }

  /** A token's holders, largest balance first (ties by account), zero balances left out. */
  async holders(tokenId: string, limit: number, offset: number): Promise<Page<Holding>> {
    const query = { tokenId, amount: { $ne: "0" } };
    const [rows, total] = await Promise.all([
      // sortKey: the amount as a fixed-width string, so that the store sorts it as a number.
      this.stores.balances.find(query, { sort: { sortKey: -1, account: 1 }, limit, offset }),
      this.stores.balances.count(query),
    ]);
    return { rows: rows.map(b => ({ account: b.account, amount: b.amount })), total };
  }

  /** An account's non-zero balances of live tokens, with their symbols, by token id. */
  async balancesOf(account: string, limit: number, offset: number): Promise<Page<AccountBalance>> {
    const query = { account, amount: { $ne: "0" } };
    const [docs, total] = await Promise.all([
      this.stores.balances.find(query, { sort: { tokenId: 1 }, limit, offset }),
      this.stores.balances.count(query),
    ]);
    // One read for the page's tokens, not one per row.
    const ids = docs.map(b => b.tokenId);
    const tokens = await this.stores.tokens.find({ _id: { $in: ids }, state: "active" });
    const symbol = new Map(tokens.map(t => [t._id, t.symbol]));
    const rows = docs
      .filter(b => symbol.has(b.tokenId))
      .map(b => ({ tokenId: b.tokenId, symbol: symbol.get(b.tokenId)!, amount: b.amount }));
    return { rows, total };
  }

  /** What `spender` may spend of `owner`'s balance of the token ("0" when never approved). */
  async allowance(tokenId: string, owner: string, spender: string): Promise<string> {
    const doc = await this.stores.allowances.findOne({ _id: allowanceId(tokenId, owner, spender) });
    return doc?.amount ?? "0";
  }

  /** The live token as stored now; 404 otherwise. */
  async require(id: string): Promise<TokenDoc> {
    const doc = await this.active(id, true);
    if (!doc) throw notFound("Token");
    return doc;
  }

  /** Finishes tokens half created or deleted, and events not yet in the outbox. */
  async recover(): Promise<void> {
    const tokens = this.stores.tokens;
    for (const doc of await tokens.find({ state: "creating" })) await this.finishCreate(doc);
    for (const doc of await tokens.find({ state: "deleting" })) await this.finishDelete(doc);
    for (const doc of await tokens.find({ unpublished: true })) await this.publishUpdate(doc);
    for (const a of await this.stores.allowances.find({ unpublished: true }))
      await this.publishApproval(a);
  }

  /** Creator's balance, then the event, then the token goes active: each step idempotent. */
  private async finishCreate(doc: TokenDoc): Promise<TokenDoc> {
    if (doc.state !== "creating") return doc;
    await insertIfAbsent(this.stores.balances, {
      _id: balanceId(doc._id, doc.creatorId),
      tokenId: doc._id,
      account: doc.creatorId,
      amount: doc.totalSupply,
      sortKey: amountSortKey(doc.totalSupply),
      version: 1,
      ops: {},
    });
    const data: TokenCreated = {
      token: toToken(doc),
      balances: [{ account: doc.creatorId, amount: doc.totalSupply, version: 1 }],
    };
    await this.outbox.write([domainEvent(TOKEN_EVENTS.created, doc._id, data)]);
    const tokens = this.stores.tokens;
    const active =
      (await tokens.updateOne(
        { _id: doc._id, state: "creating" },
        { $set: { state: "active" } },
      )) ?? (await tokens.findOne({ _id: doc._id }));
    if (!active || active.state !== "active") throw notFound("Token");
    this.cache.set(active._id, active);
    this.logger.info({ tokenId: active._id, symbol: active.symbol }, "Token created");
    return active;
  }

  private async finishDelete(doc: TokenDoc): Promise<void> {
    await this.stores.balances.remove({ tokenId: doc._id });
    await this.stores.allowances.remove({ tokenId: doc._id });
    this.onDeleted(doc._id);
    const data: TokenDeleted = { tokenId: doc._id };
    await this.outbox.write([domainEvent(TOKEN_EVENTS.deleted, doc._id, data)]);
    await this.stores.tokens.remove({ _id: doc._id, state: "deleting" });
    this.logger.info({ tokenId: doc._id }, "Token deleted");
  }

  /** Writes the event of the token's current version and clears its `unpublished` flag. */
  private async publishUpdate(doc: TokenDoc): Promise<void> {
    const data: TokenUpdated = { token: toToken(doc) };
    const event = domainEvent(TOKEN_EVENTS.updated, `${doc._id}:${doc.version}`, data);
    await publishThenClear(this.outbox, this.stores.tokens, doc, event);
  }

  private async publishApproval(a: AllowanceDoc): Promise<TokenApproved> {
    const data: TokenApproved = {
      tokenId: a.tokenId,
      owner: a.owner,
      spender: a.spender,
      amount: a.amount,
    };
    const event = domainEvent(TOKEN_EVENTS.approved, `${a._id}:${a.version}`, data);
    await publishThenClear(this.outbox, this.stores.allowances, a, event);
    return data;
  }
}
