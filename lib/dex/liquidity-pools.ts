import { checkedAdd, checkedSub } from "../shared/amount";
import { ClientError, conflict } from "../shared/errors";
import {
  insertIfAbsent,
  pruneOlderThan,
  type CollectionSpec,
  type Doc,
  type Store,
} from "../store/store";

/**
 * The dex's liquidity pools: a pool per token, with an account of its own
 * (`pool_<tokenId>`) that the tokens ledger holds like a user's. Adding liquidity moves
 * tokens from the provider to the pool account (tokens.transferInternal, through `move`),
 * exactly once per key; removing it moves what that key added back. No broker in here:
 * services/dex.service.ts hands it its stores and `move`.
 *
 * Each operation is a document keyed by its idempotency key, written before anything
 * moves; the ledger transfer takes a key derived from it, so doing a step again after a
 * crash, or on two nodes at once, moves nothing twice. The pool's `reserve` follows
 * the operations exactly once: a compare-and-set on its `version` changes the reserve
 * and pushes the operation onto `pending` in one write; then the operation records that
 * it is counted; then it leaves `pending` (as lib/read-models/analytics-counters.ts counts events).
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
  version: number;
  /** Operations whose change of `reserve` is written and not yet recorded on them. */
  pending: string[];
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
  /** The reserve counts the add / its reversal (the source of the pool's `pending`). */
  added?: true;
  removed?: true;
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

/** A ledger transfer, idempotent by `key` (tokens.transferInternal). */
export type Move = (m: {
  tokenId: string;
  from: string;
  to: string;
  amount: string;
  key: string;
}) => Promise<void>;

const MAX_CAS_ROUNDS = 50;

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
  constructor(
    private readonly stores: DexStores,
    private readonly move: Move,
  ) {}

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
    if (current.state !== "done") {
      await this.settleAdd(current);
      const done = await this.stores.ops.updateOne(
        { _id: op._id, state: "pending" },
        { $set: { state: "done" } },
      );
      // Reversed meanwhile by a removal of this key.
      if (!done && (await this.stores.ops.findOne({ _id: op._id }))?.state !== "done")
        throw withdrawn();
    }
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
    await this.count(op, "removed", -BigInt(op.amount));
    await this.stores.ops.updateOne(
      { _id: op._id, state: "undoing" },
      { $set: { state: "undone" } },
    );
    return this.get(op.tokenId);
  }

  /**
   * The add's transfer (again: same key) and its place in the reserve. False when the
   * ledger refused it: then nothing moved, and a pending add is marked failed.
   */
  private async settleAdd(op: LiquidityOpDoc): Promise<boolean> {
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
    await this.count(op, "added", BigInt(op.amount));
    return true;
  }

  /** Changes the pool's reserve by `delta` for `op`, exactly once (see the header). */
  private async count(op: LiquidityOpDoc, mark: "added" | "removed", delta: bigint): Promise<void> {
    const { pools, ops } = this.stores;
    const tag = `${mark}:${op._id}`;
    for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
      // The pool before the operation: whatever another node finished before this read
      // is recorded on the operation now; whatever it does after moves `version`.
      const pool = await pools.findOne({ _id: op.tokenId });
      if (!pool) {
        await insertIfAbsent(pools, {
          _id: op.tokenId,
          tokenId: op.tokenId,
          account: poolAccountId(op.tokenId),
          reserve: "0",
          providerId: op.providerId,
          version: 1,
          pending: [],
          createdAt: new Date().toISOString(),
        });
        continue;
      }
      if (!pool.pending.includes(tag)) {
        if ((await ops.findOne({ _id: op._id }))?.[mark]) return;
        const reserve = BigInt(pool.reserve);
        const next = delta >= 0n ? checkedAdd(reserve, delta) : checkedSub(reserve, -delta);
        if (next === null) throw new Error(`Pool ${pool._id} would go below zero`);
        const changed = await pools.updateOne(
          { _id: pool._id, version: pool.version },
          {
            $set: { reserve: next.toString(10), version: pool.version + 1 },
            $push: { pending: tag },
          },
        );
        if (!changed) continue;
      }
      await ops.updateOne({ _id: op._id }, { $set: { [mark]: true } });
      await pools.updateOne({ _id: pool._id }, { $pull: { pending: tag } });
      return;
    }
    throw new Error(`Pool ${op.tokenId} is too contended`);
  }
}
