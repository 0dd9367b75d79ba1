import { randomBytes } from "node:crypto";
import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import type { ServiceBroker as Broker } from "moleculer";
import { TOKEN_EVENTS } from "../../lib/events/domain";
import type * as Events from "../../lib/events/domain";

/**
 * Publishing domain events the way the write model does (broker.sendToChannel on a real
 * channel adapter), and a script that produces a consistent event history for one token
 * (balances with growing versions), for read-model tests that do not go through tokens.
 */

/** The channels middleware on NATS JetStream, as a node has it with CHANNELS_URL=nats://…. */
export function jetStreamChannels(natsUrl: string) {
  return ChannelsMiddleware({ adapter: natsUrl, context: true } as Parameters<
    typeof ChannelsMiddleware
  >[0]);
}

type ChannelBroker = Broker & {
  sendToChannel(channel: string, payload: unknown, opts?: object): Promise<void>;
};

export function sendToChannel(broker: Broker, event: Events.DomainEvent): Promise<void> {
  return (broker as ChannelBroker).sendToChannel(event.type, event);
}

export async function sendAll(broker: Broker, events: Events.DomainEvent[]): Promise<void> {
  for (const e of events) await sendToChannel(broker, e);
}

let seq = 0;
const uid = (): string => `${randomBytes(6).toString("hex")}${(seq++).toString(36)}`;

/** A token's history as the write model would publish it. */
export class TokenScript {
  readonly token: Events.Token;
  private readonly balances = new Map<string, { amount: bigint; version: number }>();
  private clock: number;

  constructor(token: Partial<Events.Token> & { creatorId: string }) {
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

  private set(account: string, amount: bigint): Events.BalanceAfter {
    const version = (this.balances.get(account)?.version ?? 0) + 1;
    this.balances.set(account, { amount, version });
    return { account, amount: amount.toString(), version };
  }

  amountOf(account: string): bigint {
    return this.balances.get(account)?.amount ?? 0n;
  }

  created(): Events.DomainEvent<Events.TokenCreated> {
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

  transfer(from: string, to: string, amount: string): Events.DomainEvent<Events.TokenTransferred> {
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

  updated(changes: Partial<Events.Token>): Events.DomainEvent<Events.TokenUpdated> {
    Object.assign(this.token, changes);
    return {
      eventId: `evt_updated_${uid()}`,
      type: TOKEN_EVENTS.updated,
      occurredAt: this.at(),
      data: { token: { ...this.token } },
    };
  }

  deleted(): Events.DomainEvent<Events.TokenDeleted> {
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
