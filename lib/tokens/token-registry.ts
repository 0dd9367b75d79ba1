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
  type DomainEvent,
} from "../events/domain";
import { BoundedMap } from "../shared/bounded-map";
import { allowanceId, balanceId, type AllowanceDoc, type BalanceDoc } from "./ledger";
import { newId } from "../shared/ids";
import type { OutboxWriter } from "../messaging/outbox";
import {
  DuplicateKeyError,
  type Database,
  type Doc,
  type Store,
  type TxStores,
} from "../store/store";
import type { TokenLookup } from "./transfer-engine";

/**
 * Tokens themselves (create, metadata, delete) and allowances (approve). Every change is
 * one transaction of the tokens database with its event in the outbox: a token is
 * created with its creator's balance, deleted with all its balances and allowances, or
 * not at all, so a crash leaves nothing half done. No broker in here (see TransferEngine).
 */

/** Only "active" is written now; the others may be in a database an older version wrote. */
type TokenState = "creating" | "active" | "deleting";

/** A stored token: the API's Token (its `id` is `_id`) plus the write model's own fields. */
export interface TokenDoc extends Doc, Omit<Token, "id"> {
  state: TokenState;
  version: number;
  /** Idempotency key of the create call: a retry finds its own token behind the taken symbol. */
  createKey: string;
}

export interface TokenStores {
  tokens: Store<TokenDoc>;
  balances: Store<BalanceDoc>;
  allowances: Store<AllowanceDoc>;
}

/** The tokens service's collections, as a transaction names them. */
const TOKENS = "tokens";
const BALANCES = "balances";
const ALLOWANCES = "allowances";

const txStores = (tx: TxStores): TokenStores => ({
  tokens: tx.store<TokenDoc>(TOKENS),
  balances: tx.store<BalanceDoc>(BALANCES),
  allowances: tx.store<AllowanceDoc>(ALLOWANCES),
});

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
  private readonly stores: TokenStores;

  constructor(
    private readonly db: Database,
    private readonly outbox: OutboxWriter,
    private readonly logger: RegistryLogger,
  ) {
    this.stores = txStores(db);
  }

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
      state: "active",
      version: 1,
      createKey,
    };
    const taken = () =>
      conflict("Symbol is already taken", [{ field: "symbol", message: "already taken" }]);
    let created: TokenDoc | null;
    try {
      created = await this.change(async (tx, events) => {
        const existing = await tx.tokens.findOne({ symbol: p.symbol });
        // The same create again (a retry): answered like the first time.
        if (existing) return existing.createKey === createKey ? existing : null;
        await tx.tokens.insert(doc);
        await tx.balances.insert({
          _id: balanceId(doc._id, creatorId),
          tokenId: doc._id,
          account: creatorId,
          amount: doc.totalSupply,
          sortKey: amountSortKey(doc.totalSupply),
          version: 1,
        });
        const data: TokenCreated = {
          token: toToken(doc),
          balances: [{ account: creatorId, amount: doc.totalSupply, version: 1 }],
        };
        events.push(domainEvent(TOKEN_EVENTS.created, doc._id, data));
        return doc;
      });
    } catch (err) {
      // The unique index on symbol decided a race with another process's create.
      if (!(err instanceof DuplicateKeyError)) throw err;
      const existing = await this.stores.tokens.findOne({ symbol: p.symbol });
      created = existing?.createKey === createKey ? existing : null;
    }
    if (!created || created.state !== "active") throw taken();
    if (created === doc)
      this.logger.info({ tokenId: doc._id, symbol: doc.symbol }, "Token created");
    this.cache.set(created._id, created);
    return created;
  }

  /** Sets the given metadata fields; only the creator may. */
  async updateMetadata(id: string, userId: string, changes: TokenMetadata): Promise<TokenDoc> {
    const updated = await this.change(async (tx, events) => {
      const doc = await this.requireIn(tx, id);
      if (doc.creatorId !== userId) throw forbidden("Only the creator may change the metadata");
      const metadata: TokenMetadata = { ...doc.metadata };
      for (const k of METADATA_FIELDS) if (changes[k] !== undefined) metadata[k] = changes[k];
      const next = await tx.tokens.updateOne(
        { _id: doc._id, version: doc.version },
        { $set: { metadata, version: doc.version + 1 } },
      );
      if (!next) throw new Error(`Token ${id} changed inside its transaction`);
      const data: TokenUpdated = { token: toToken(next) };
      events.push(domainEvent(TOKEN_EVENTS.updated, `${next._id}:${next.version}`, data));
      return next;
    });
    this.cache.set(updated._id, updated);
    return updated;
  }

  /** Sets (not adds) what `spender` may move of `owner`'s balance. */
  approve(tokenId: string, owner: string, spender: string, amount: string): Promise<TokenApproved> {
    return this.change(async (tx, events) => {
      const token = await this.requireIn(tx, tokenId);
      const id = allowanceId(token._id, owner, spender);
      const cur = await tx.allowances.findOne({ _id: id });
      const version = (cur?.version ?? 0) + 1;
      if (cur) await tx.allowances.updateOne({ _id: id }, { $set: { amount, version } });
      else
        await tx.allowances.insert({
          _id: id,
          tokenId: token._id,
          owner,
          spender,
          amount,
          version,
        });
      const data: TokenApproved = { tokenId: token._id, owner, spender, amount };
      events.push(domainEvent(TOKEN_EVENTS.approved, `${id}:${version}`, data));
      return data;
    });
  }

  /** Removes a token and everything of it (saga compensation). Idempotent. */
  async delete(id: string): Promise<void> {
    const deleted = await this.change(async (tx, events) => {
      if ((await tx.tokens.remove({ _id: id })) === 0) return false;
      await tx.balances.remove({ tokenId: id });
      await tx.allowances.remove({ tokenId: id });
      const data: TokenDeleted = { tokenId: id };
      events.push(domainEvent(TOKEN_EVENTS.deleted, id, data));
      return true;
    });
    this.cache.delete(id);
    if (deleted) this.logger.info({ tokenId: id }, "Token deleted");
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

  /** The live token inside a transaction; 404 otherwise. */
  private async requireIn(tx: TokenStores, id: string): Promise<TokenDoc> {
    const doc = await tx.tokens.findOne({ _id: id });
    if (!doc || doc.state !== "active") throw notFound("Token");
    return doc;
  }

  /**
   * One change of the registry: `fn`'s writes and the events it pushes commit together;
   * the events are sent once committed.
   */
  private async change<R>(fn: (tx: TokenStores, events: DomainEvent[]) => Promise<R>): Promise<R> {
    const { value, send } = await this.db.transaction(async tx => {
      const events: DomainEvent[] = [];
      const value = await fn(txStores(tx), events);
      return { value, send: events.length > 0 ? await this.outbox.writeIn(tx, events) : null };
    });
    send?.();
    return value;
  }
}
