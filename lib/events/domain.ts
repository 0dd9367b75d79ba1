import type { ACTIVITY_EVENTS } from "./activity";
import type { MARKET_EVENTS } from "./market";
import type { NFT_EVENTS } from "./nfts";

/**
 * Domain events: the contract between write models (tokens, nfts, market, marketing, sagas) and their consumers (catalog, analytics). Each travels on the @moleculer/channels channel named
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

/** A token's promotion (services/marketing.service.ts): the catalog ORs it into `featured`. */
export const MARKETING_EVENTS = {
  activated: "marketing.activated",
  deactivated: "marketing.deactivated",
} as const;

/** A saga that ended (services/sagas.service.ts): analytics counts launches by outcome. */
export const SAGA_EVENTS = {
  completed: "sagas.completed",
  compensated: "sagas.compensated",
  failed: "sagas.failed",
} as const;

/** The names of a table of events. */
export type EventName<T> = T[keyof T];
/** Every channel a domain event travels on. */
export type EventType =
  | EventName<typeof TOKEN_EVENTS>
  | EventName<typeof NFT_EVENTS>
  | EventName<typeof MARKET_EVENTS>
  | EventName<typeof MARKETING_EVENTS>
  | EventName<typeof SAGA_EVENTS>
  | EventName<typeof ACTIVITY_EVENTS>;

export interface TokenMetadata {
  description?: string;
  imageUrl?: string;
  website?: string;
}

/** A token as docs/api.md describes it. Amounts are decimal strings of base units. */
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
  /** A transferFrom's spender: whose allowance it spent (absent for a plain transfer). */
  spender?: string;
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

/** A token's campaign as it is after a change; `version` orders the changes of one campaign. */
export interface CampaignChanged {
  tokenId: string;
  active: boolean;
  budget: string | null;
  version: number;
}

/** The end of a saga: what it was, for whom, and how it ended. */
export interface SagaEnded {
  sagaId: string;
  /** The saga's kind ("launch", …). */
  sagaType: string;
  userId: string;
  state: "completed" | "compensated" | "failed";
}

/** An event of `type` whose id is derived from the change (`id`), so a re-write repeats it. */
export function domainEvent<T>(type: EventType, id: string, data: T): DomainEvent<T> {
  return { eventId: `${type}:${id}`, type, occurredAt: new Date().toISOString(), data };
}
