import { checkedAdd, checkedSub } from "../shared/amount";
import { ClientError, conflict } from "../shared/errors";
import {
  insertIfAbsent,
  pruneOlderThan,
  type CollectionSpec,
  type Database,
  type Doc,
  type Store,
  type TxStores,
} from "../store/store";

/**
 * The dex's liquidity pools: a pool per token, with an account of its own
 * (`pool_<tokenId>`) that the tokens ledger holds like a user's. Adding liquidity moves
 * tokens from the provider to the pool account (tokens.transferInternal, through `move`),
 * exactly once per key; removing it moves what that key added back. No broker in here:
 * services/dex.service.ts hands it its stores and `move`.
 *
 * Each operation is a document keyed by its idempotency key, written before anything
 * moves; the ledger transfer (another service: no transaction of ours takes it in) takes
 * a key derived from it, so doing a step again after a crash, or on two nodes at once,
 * moves nothing twice. Once a transfer is done, the pool's `reserve` follows it exactly
 * once: one transaction of the dex database changes the reserve and records on the
 * operation that it is counted (`added`), with the operation's next state.
 *
 * A removal is also a fence: removing a key whose add has not arrived yet (it was
 * called, timed out, and is still on its way) records the add as withdrawn, and the add,
 * when it comes, is refused; one that was half done is finished first, then reversed.
 */

/** The account of a token's pool in the tokens ledger. */
export const POOL_ACCOUNT_PREFIX = "pool_";
export const poolAccountId = (tokenId: string): string => `${POOL_ACCOUNT_PREFIX}${tokenId}`;
export const isPoolAccount = (account: string): boolean =>
  account.startsWith(POOL_ACCOUNT_PREFIX) && account.length > POOL_ACCOUNT_PREFIX.length;

/** A pool as docs/api.md shows it. */
export interface Pool {
  tokenId: string;
  account: string;
  reserve: string;
  providerId: string;
}

export interface PoolDoc extends Doc, Pool {
  /** The tokenId. */
  _id: string;
  createdAt: string;
}

/**
 * pending: written, its transfer maybe not; done: in the pool; failed: refused by the
 * ledger, nothing moved; undoing: being reversed; undone: reversed, or withdrawn before
 * it arrived (then `amount` is "0").
 */
export type LiquidityOpState = "pending" | "done" | "failed" | "undoing" | "undone";

export interface LiquidityOpDoc extends Doc {
  /** "add:<key>". */
  _id: string;
  tokenId: string;
  providerId: string;
  amount: string;
  state: LiquidityOpState;
  /** The refusal a repeat of the key answers with. */
  error?: { type: string; message: string; status: number };
  /** The reserve counts the add (its reversal is counted with the state `undone`). */
  added?: true;
  createdAt: string;
}

export const DEX_COLLECTIONS = {
  pools: {},
  ops: { indexes: ["createdAt"] },
} satisfies Record<string, CollectionSpec>;

export interface DexStores {
  pools: Store<PoolDoc>;
  ops: Store<LiquidityOpDoc>;
}

/** The dex's collections, as a transaction (or the database) names them. */
export const dexStores = (tx: TxStores): DexStores => ({
  pools: tx.store<PoolDoc>("pools"),
  ops: tx.store<LiquidityOpDoc>("ops"),
});

/** A ledger transfer, idempotent by `key` (tokens.transferInternal). */
export type Move = (m: {
  tokenId: string;
  from: string;
  to: string;
  amount: string;
  key: string;
}) => Promise<void>;

const toPool = (d: PoolDoc): Pool => ({
  tokenId: d.tokenId,
  account: d.account,
  reserve: d.reserve,
  providerId: d.providerId,
});

/** A refusal of the ledger (4xx, not "in progress"): the transfer did not and will not happen. */
const refused = (err: unknown): err is ClientError => {
  const e = err as { code?: unknown; retryable?: boolean };
  return typeof e.code === "number" && e.code >= 400 && e.code < 500 && !e.retryable;
};

const withdrawn = () => conflict("This liquidity was withdrawn; add it again with a new key");

export class LiquidityPools {
  private readonly stores: DexStores;

  constructor(
    private readonly db: Database,
    private readonly move: Move,
  ) {
    this.stores = dexStores(db);
  }

  /**
   * Forgets finished operations created before `before` (their keys with them): past every
   * retry and recovery window, as the tokens journal's retention. Returns how many.
   */
  prune(before: Date): Promise<number> {
    return pruneOlderThan(this.stores.ops, "createdAt", before.getTime(), {
      iso: true,
      where: { state: { $in: ["done", "failed", "undone"] } },
    });
  }

  /** A pool while it holds liquidity; null otherwise. */
  async get(tokenId: string): Promise<Pool | null> {
    const doc = await this.stores.pools.findOne({ _id: tokenId });
    return doc && doc.reserve !== "0" ? toPool(doc) : null;
  }

  /** Moves `amount` of the provider's tokens into the token's pool, once per key. */
  async add(tokenId: string, providerId: string, amount: string, key: string): Promise<Pool> {
    const op: LiquidityOpDoc = {
      _id: `add:${key}`,
      tokenId,
      providerId,
      amount,
      state: "pending",
      createdAt: new Date().toISOString(),
    };
    let current = op;
    if (!(await insertIfAbsent(this.stores.ops, op))) {
      current = (await this.stores.ops.findOne({ _id: op._id }))!;
      if (current.state === "undoing" || current.state === "undone") throw withdrawn();
      if (
        current.tokenId !== tokenId ||
        current.providerId !== providerId ||
        current.amount !== amount
      )
        throw conflict("Idempotency key was already used for another request");
      if (current.state === "failed" && current.error) {
        const { message, status, type } = current.error;
        throw new ClientError(message, status, type);
      }
    }
    // Reversed meanwhile by a removal of this key: counted, and to be given back.
    if (current.state !== "done" && (await this.settleAdd(current)) !== "done") throw withdrawn();
    return toPool((await this.stores.pools.findOne({ _id: tokenId }))!);
  }

  /**
   * Gives back what `key` added (to its provider), once; an add not seen yet is
   * withdrawn before it arrives. The pool as it is after, or null when it is empty.
   */
  async remove(tokenId: string, key: string): Promise<Pool | null> {
    const id = `add:${key}`;
    const fence: LiquidityOpDoc = {
      _id: id,
      tokenId,
      providerId: "",
      amount: "0",
      state: "undone",
      createdAt: new Date().toISOString(),
    };
    if (await insertIfAbsent(this.stores.ops, fence)) return this.get(tokenId);
    for (;;) {
      const op = (await this.stores.ops.findOne({ _id: id }))!;
      if (op.tokenId !== tokenId)
        throw conflict("Idempotency key was already used for another request");
      if (op.state === "undone" || op.state === "failed") return this.get(tokenId);
      if (op.state === "undoing") return this.reverse(op);
      const taken = await this.stores.ops.updateOne(
        { _id: id, state: op.state },
        { $set: { state: "undoing" } },
      );
      if (taken) return this.reverse(taken);
    }
  }

  /** The add in full first (its transfer and reserve, both idempotent), then back out. */
  private async reverse(op: LiquidityOpDoc): Promise<Pool | null> {
    if (!(await this.settleAdd(op))) {
      await this.stores.ops.updateOne(
        { _id: op._id, state: "undoing" },
        { $set: { state: "undone" } },
      );
      return this.get(op.tokenId);
    }
    await this.move({
      tokenId: op.tokenId,
      from: poolAccountId(op.tokenId),
      to: op.providerId,
      amount: op.amount,
      key: `undo:${op._id}`,
    });
    // The reserve gives it back with the state that says so, in one transaction.
    await this.db.transaction(async tx => {
      const { pools, ops } = dexStores(tx);
      const cur = await ops.findOne({ _id: op._id });
      if (cur?.state !== "undoing") return; // another node finished it
      if (cur.added) await this.changeReserve(pools, cur, -BigInt(cur.amount));
      await ops.updateOne({ _id: op._id }, { $set: { state: "undone" } });
    });
    return this.get(op.tokenId);
  }

  /**
   * The add's transfer (again: same key) and its place in the reserve; resolves to the
   * operation's state after. False when the ledger refused it: then nothing moved, and a
   * pending add is marked failed.
   */
  private async settleAdd(op: LiquidityOpDoc): Promise<LiquidityOpState | false> {
    try {
      await this.move({
        tokenId: op.tokenId,
        from: op.providerId,
        to: poolAccountId(op.tokenId),
        amount: op.amount,
        key: op._id,
      });
    } catch (err) {
      if (!refused(err)) throw err; // unknown outcome: left pending for a retry of the key
      await this.stores.ops.updateOne(
        { _id: op._id, state: "pending" },
        {
          $set: {
            state: "failed",
            error: { type: err.type, message: err.message, status: err.code },
          },
        },
      );
      if (op.state !== "undoing") throw err;
      return false;
    }
    // Counted once, and a pending add done, in one transaction.
    return this.db.transaction(async tx => {
      const { pools, ops } = dexStores(tx);
      const cur = (await ops.findOne({ _id: op._id }))!;
      // Ended without this add in the reserve (withdrawn): nothing to count.
      if (!cur.added && (cur.state === "undone" || cur.state === "failed")) return cur.state;
      const state = cur.state === "pending" ? "done" : cur.state;
      if (cur.added && state === cur.state) return state;
      if (!cur.added) await this.changeReserve(pools, cur, BigInt(cur.amount));
      await ops.updateOne({ _id: op._id }, { $set: { added: true, state } });
      return state;
    });
  }

  /** Changes the pool's reserve by `delta`, inside the transaction that records why. */
  private async changeReserve(
    pools: Store<PoolDoc>,
    op: LiquidityOpDoc,
    delta: bigint,
  ): Promise<void> {
    const pool = await pools.findOne({ _id: op.tokenId });
    const reserve = BigInt(pool?.reserve ?? "0");
    const next = delta >= 0n ? checkedAdd(reserve, delta) : checkedSub(reserve, -delta);
    if (next === null) throw new Error(`Pool ${op.tokenId} would go below zero`);
    if (pool) await pools.updateOne({ _id: pool._id }, { $set: { reserve: next.toString(10) } });
    else
      await pools.insert({
        _id: op.tokenId,
        tokenId: op.tokenId,
        account: poolAccountId(op.tokenId),
        reserve: next.toString(10),
        providerId: op.providerId,
        createdAt: new Date().toISOString(),
      });
  }
}
