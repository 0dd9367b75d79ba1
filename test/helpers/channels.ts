import { randomBytes } from "node:crypto";
import type { ServiceBroker as Broker } from "moleculer";
import {
  TOKEN_EVENTS,
  type BalanceAfter,
  type DomainEvent,
  type Token,
  type TokenCreated,
  type TokenDeleted,
  type TokenTransferred,
  type TokenUpdated,
} from "../../lib/events";

/**
 * Publishing domain events the way the write model does (broker.sendToChannel on a real
 * channel adapter), and a script that produces a consistent event history for one token
 * (balances with growing versions), for read-model tests that do not go through tokens.
 */

type ChannelBroker = Broker & {
  sendToChannel(channel: string, payload: unknown, opts?: object): Promise<void>;
};

export function sendToChannel(broker: Broker, event: DomainEvent): Promise<void> {
  return (broker as ChannelBroker).sendToChannel(event.type, event);
}

export async function sendAll(broker: Broker, events: DomainEvent[]): Promise<void> {
  for (const e of events) await sendToChannel(broker, e);
}

let seq = 0;
const uid = (): string => `${randomBytes(6).toString("hex")}${(seq++).toString(36)}`;

/** A token's history as the write model would publish it. */
export class TokenScript {
  readonly token: Token;
  private readonly balances = new Map<string, { amount: bigint; version: number }>();
  private clock: number;

  constructor(token: Partial<Token> & { creatorId: string }) {
    this.clock = Date.parse(token.createdAt ?? new Date().toISOString());
    this.token = {
      id: `tok_${uid()}`,
      name: "Token",
      symbol: "TKN",
      decimals: 18,
      totalSupply: "1000",
      metadata: {},
      createdAt: new Date(this.clock).toISOString(),
      ...token,
    };
  }

  private at(): string {
    this.clock += 1;
    return new Date(this.clock).toISOString();
  }

  private set(account: string, amount: bigint): BalanceAfter {
    const version = (this.balances.get(account)?.version ?? 0) + 1;
    this.balances.set(account, { amount, version });
    return { account, amount: amount.toString(), version };
  }

  amountOf(account: string): bigint {
    return this.balances.get(account)?.amount ?? 0n;
  }

  created(): DomainEvent<TokenCreated> {
    return {
      eventId: `evt_created_${this.token.id}`,
      type: TOKEN_EVENTS.created,
      occurredAt: this.token.createdAt,
      data: {
        token: this.token,
        balances: [this.set(this.token.creatorId, BigInt(this.token.totalSupply))],
      },
    };
  }

  transfer(from: string, to: string, amount: string): DomainEvent<TokenTransferred> {
    const value = BigInt(amount);
    const balances =
      from === to
        ? [this.set(from, this.amountOf(from))]
        : [this.set(from, this.amountOf(from) - value), this.set(to, this.amountOf(to) + value)];
    const transferId = `trf_${uid()}`;
    const createdAt = this.at();
    return {
      eventId: `evt_transferred_${transferId}`,
      type: TOKEN_EVENTS.transferred,
      occurredAt: createdAt,
      data: { transferId, tokenId: this.token.id, from, to, amount, createdAt, balances },
    };
  }

  updated(changes: Partial<Token>): DomainEvent<TokenUpdated> {
    Object.assign(this.token, changes);
    return {
      eventId: `evt_updated_${uid()}`,
      type: TOKEN_EVENTS.updated,
      occurredAt: this.at(),
      data: { token: { ...this.token } },
    };
  }

  deleted(): DomainEvent<TokenDeleted> {
    return {
      eventId: `evt_deleted_${this.token.id}`,
      type: TOKEN_EVENTS.deleted,
      occurredAt: this.at(),
      data: { tokenId: this.token.id },
    };
  }

  /** Accounts holding a non-zero balance now. */
  holders(): number {
    return [...this.balances.values()].filter(b => b.amount !== 0n).length;
  }
}

/**
 * Deletes the JetStream streams a test namespace created (the channels adapter names
 * them `<namespace>_<channel with dots as underscores>`), so test runs leave nothing behind.
 */
export async function deleteNamespaceStreams(natsUrl: string, namespace: string): Promise<void> {
  const { connect } = await import("nats");
  const nc = await connect({ servers: new URL(natsUrl).host });
  try {
    const jsm = await nc.jetstreamManager();
    const names: string[] = [];
    for await (const info of jsm.streams.list()) {
      if (info.config.name.startsWith(`${namespace}_`)) names.push(info.config.name);
    }
    for (const name of names) await jsm.streams.delete(name);
  } finally {
    await nc.close();
  }
}
