import { createHash } from "node:crypto";
import type { CollectionSpec } from "../store/store";

/**
 * Pure parts of the token ledger (no broker, no database): document shapes of the
 * tokens service, ids and request fingerprints.
 */

/** The tokens service's collections (its outbox's comes with storesWithOutbox). */
export const TOKENS_COLLECTIONS: Record<
  "tokens" | "balances" | "allowances" | "journal",
  CollectionSpec
> = {
  tokens: { unique: ["symbol"], indexes: ["creatorId", "state"] },
  balances: { indexes: ["tokenId", "account"] },
  allowances: { indexes: ["tokenId"] },
  journal: { unique: ["key"], indexes: ["createdAt"] },
};

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
}

export interface AllowanceDoc {
  _id: string;
  [key: string]: unknown;
  tokenId: string;
  owner: string;
  spender: string;
  amount: string;
  version: number;
}

/** A transfer's outcome: it moved the amount, or it was refused and nothing moved. */
export type JournalState = "done" | "failed";

/**
 * One transfer (or transferFrom), written in the transaction that moves its amount: its
 * unique `key` claims the idempotency key, and a retry finds the first outcome in it.
 */
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
  /** The refusal a replay of the key answers with (status 422 unless given). */
  error: { type: string; message: string; status?: number } | null;
  createdAt: string;
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
  /** A transferFrom's spender (tokens.journaledTransfer only: the 201 answers as before). */
  spender?: string;
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
