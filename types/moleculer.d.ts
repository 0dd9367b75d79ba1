import type { Context } from "moleculer";
import type { ActionOpenApi } from "../lib/gateway/openapi/document";

/**
 * What @moleculer/channels adds to Moleculer, for the compiler. Its own typings declare
 * the middleware only, so a service's `channels` and the broker's `sendToChannel` would
 * otherwise be unchecked.
 */

/** One entry of a service's `channels: {...}` (the middleware runs with `context: true`). */
export interface ChannelSchema<TThis = unknown> {
  /** Consumer group: replicas sharing one get each message once between them. */
  group?: string;
  maxRetries?: number;
  maxInFlight?: number;
  context?: boolean;
  deadLettering?: { enabled: boolean; queueName?: string };
  /** NATS JetStream only: per-channel consumer options, merged over the adapter's. */
  nats?: { consumerOptions?: { config?: Record<string, unknown> } };
  handler(this: TThis, ctx: Context<unknown>, raw?: unknown): Promise<void> | void;
}

/** The channel adapter's parts the outbox uses (NATS JetStream has all of them). */
export interface ChannelAdapter {
  connected?: boolean;
  addPrefixTopic?(topic: string): string;
  createStream?(name: string, subjects: string[], opts: object): Promise<unknown>;
}

/**
 * The broker as the channels middleware leaves it. Moleculer 0.15 exports ServiceBroker
 * with `export =`, which TypeScript cannot merge members into (microsoft/TypeScript#14080),
 * so this is a separate interface; `channelsOf(broker)` (middlewares/channels.ts) gives it.
 */
export interface ChannelsBroker {
  sendToChannel(channel: string, payload: unknown, opts?: Record<string, unknown>): Promise<void>;
  channelAdapter?: ChannelAdapter;
}

declare module "moleculer/src/service" {
  // Same type parameters as Moleculer's own declarations, so the two merge.
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- must match to merge
  interface ActionSchema<TThis> {
    /**
     * How the API document (GET /api/openapi.json, lib/gateway/openapi/document.ts) describes the route
     * that calls this action: summary, success status and response schema.
     */
    openapi?: ActionOpenApi;
  }
  interface ServiceSchema<TSettings, TMethods, TVars, TThis> {
    /** Durable event consumers (@moleculer/channels), by channel name. */
    channels?: Record<string, ChannelSchema<TThis>>;
    /**
     * Moleculer calls it with the schema once the mixins are merged in, before the service
     * is built from it; its 0.15 typings leave it out.
     */
    // Method syntax: checked bivariantly, so schemas of different settings stay assignable.
    merged?(this: TThis, schema: ServiceSchema<TSettings, TMethods, TVars, TThis>): void;
  }
}
