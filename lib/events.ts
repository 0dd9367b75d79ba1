/**
 * Domain events: the contract between write models (tokens, nfts, market) and their
 * consumers (catalog, analytics). Each travels on the @moleculer/channels channel named
 * by its `type`, at least once; consumers dedupe by `eventId`.
 */

export interface DomainEvent<T = unknown> {
  /** Unique and derived from the change it reports, so re-publishing after a crash repeats the same id. */
  eventId: string;
  type: EventType;
  /** ISO time of the change. */
  occurredAt: string;
  data: T;
}

export const TOKEN_EVENTS = {
  created: "tokens.created",
  transferred: "tokens.transferred",
  approved: "tokens.approved",
  updated: "tokens.updated",
  deleted: "tokens.deleted",
} as const;

export type TokenEventType = (typeof TOKEN_EVENTS)[keyof typeof TOKEN_EVENTS];
export type EventType = TokenEventType;

export interface TokenMetadata {
  description?: string;
  imageUrl?: string;
  website?: string;
}

/** A token as API.md describes it. Amounts are decimal strings of base units. */
export interface Token {
  id: string;
  name: string;
  symbol: string;
  decimals: number;
  totalSupply: string;
  creatorId: string;
  metadata: TokenMetadata;
  createdAt: string;
}

/** A balance after a change; `version` grows with every change of that balance. */
export interface BalanceAfter {
  account: string;
  amount: string;
  version: number;
}

export interface TokenCreated {
  token: Token;
  /** The creator's balance: the whole supply. */
  balances: BalanceAfter[];
}

export interface TokenTransferred {
  transferId: string;
  tokenId: string;
  from: string;
  to: string;
  amount: string;
  createdAt: string;
  /** Balances of `from` and `to` after the transfer (one entry for a transfer to oneself). */
  balances: BalanceAfter[];
}

export interface TokenApproved {
  tokenId: string;
  owner: string;
  spender: string;
  amount: string;
}

export interface TokenUpdated {
  token: Token;
}

export interface TokenDeleted {
  tokenId: string;
}

/** An event of `type` whose id is derived from the change (`id`), so a re-write repeats it. */
export function domainEvent<T>(type: EventType, id: string, data: T): DomainEvent<T> {
  return { eventId: `${type}:${id}`, type, occurredAt: new Date().toISOString(), data };
}
