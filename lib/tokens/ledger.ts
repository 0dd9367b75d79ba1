import { createHash } from "node:crypto";
import { ServerError } from "../shared/errors";

/**
 * Pure parts of the token ledger (no broker, no database): document shapes of the
 * tokens service, ids, request fingerprints and a per-key in-process lock.
 */

/** A balance of one account in one token. `version` grows with every write (CAS guard). */
export interface BalanceDoc {
  _id: string;
  [key: string]: unknown;
  tokenId: string;
  account: string;
  amount: string;
  /** Zero-padded amount: sorts holders largest first on a string index. */
  sortKey: string;
  version: number;
  /**
   * Journal entries whose step is applied to this balance (or allowance), written in
   * the same conditional write as the change itself: crash recovery reads them to
   * tell which steps of an unfinished transfer happened. Removed once it is settled.
   */
  ops: Record<string, OpMarker>;
}

export interface AllowanceDoc {
  _id: string;
  [key: string]: unknown;
  tokenId: string;
  owner: string;
  spender: string;
  amount: string;
  version: number;
  ops: Record<string, OpMarker>;
}

/**
 * d: debited from, c: credited to, s: allowance spent, n: a transfer that moves nothing,
 * done; x: abandoned by recovery before anything moved (its owner may not debit any more).
 */
export type OpMarker = "d" | "c" | "s" | "n" | "x";

export type JournalState = "pending" | "done" | "failed";

/** One transfer (or transferFrom), written before any balance moves. */
export interface JournalDoc {
  _id: string;
  [key: string]: unknown;
  /** Idempotency key scoped to its caller; unique, so a concurrent duplicate cannot run twice. */
  key: string;
  /** What was asked: a reused key with another request is refused. */
  fingerprint: string;
  kind: "transfer" | "transferFrom";
  tokenId: string;
  from: string;
  to: string;
  amount: string;
  /** Set for transferFrom: whose allowance is spent. */
  spender: string | null;
  state: JournalState;
  /**
   * Set while `state` is pending, in a sparse index: recovery finds the few pending
   * entries without an index over every entry's state, whose upkeep grows with the journal.
   */
  pending?: true;
  /** The refusal a replay of the key answers with (status 422 unless given). */
  error: { type: string; message: string; status?: number } | null;
  createdAt: string;
  /** The engine running it, and until when (ms since epoch) no other may take it over. */
  owner?: string;
  leaseUntil?: number;
}

/** What a transfer action asks of the engine: accounts resolved, the key scoped to its caller. */
export interface TransferRequest {
  kind: JournalDoc["kind"];
  tokenId: string;
  from: string;
  to: string;
  amount: string;
  spender: string | null;
  key: string;
}

export interface TransferRecord {
  id: string;
  tokenId: string;
  from: string;
  to: string;
  amount: string;
  createdAt: string;
}

export const balanceId = (tokenId: string, account: string): string => `${tokenId}:${account}`;

export const allowanceId = (tokenId: string, owner: string, spender: string): string =>
  `${tokenId}:${owner}:${spender}`;

export function fingerprint(parts: Array<string | null>): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("base64url");
}

export function toTransferRecord(j: JournalDoc): TransferRecord {
  return {
    id: j._id,
    tokenId: j.tokenId,
    from: j.from,
    to: j.to,
    amount: j.amount,
    createdAt: j.createdAt,
  };
}

/**
 * Serializes work per key inside one process. It only saves compare-and-set retries
 * when many requests hit one balance; correctness never depends on it, since
 * other processes write the same documents without it.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>(resolve => (release = resolve));
    const tail = prev ? prev.then(() => mine) : mine;
    this.tails.set(key, tail);
    try {
      if (prev) await prev;
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  get size(): number {
    return this.tails.size;
  }
}

/** The owner stalled past its lease and another engine took the transfer over. */
export class TakenOverError extends ServerError {
  constructor() {
    super("Transfer was taken over by another node", 503, "SERVICE_UNAVAILABLE");
    this.name = "TakenOverError";
  }
}
