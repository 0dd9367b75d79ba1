import type { ServiceBroker } from "moleculer";
import type { DomainEvent } from "../lib/events/domain";
import type { EventPublisher } from "../lib/messaging/outbox";
import type { TraceParent } from "../lib/observability/trace-tags";
import type { ChannelsBroker } from "../types/moleculer";

/**
 * The broker with what @moleculer/channels adds to it (types/moleculer.d.ts says why
 * this is not an augmentation). The middleware is in every broker moleculer.config.ts
 * builds, so the members are there at run time.
 */
export function channelsOf(broker: ServiceBroker): ChannelsBroker {
  return broker as unknown as ChannelsBroker;
}

/**
 * A read model is built from the whole history: a consumer group created after events
 * were published (a first deployment, a new read model) starts from the stream's
 * beginning, not from "new" (the adapter's default). An existing group resumes where
 * it stopped either way.
 */
export const FROM_THE_START = { consumerOptions: { config: { deliver_policy: "all" } } };

/**
 * Publishes domain events to the channel named by their type. With JetStream a stream is
 * made by the first consumer that subscribes; until then a publish has nowhere to go, so
 * the publisher makes the stream itself (as the adapter names it) and an event nobody
 * consumes yet waits there instead of blocking the outbox.
 *
 * An event written while serving a request carries that request along (`trace`, captured
 * by the outbox): the publish is an "outbox.publish" span in its trace, and the message
 * headers @moleculer/channels reads with `context: true` ($requestID, $parentID, $tracing)
 * make the consumer's context, logs and span part of the same request, however much later
 * the relay sends it. `owner` (the publishing service's name) names the span's service.
 */
export function channelPublisher(broker: ServiceBroker, owner?: string): EventPublisher {
  const channels = channelsOf(broker);
  const streams = new Set<string>();
  return {
    ready: () => channels.channelAdapter?.connected !== false,
    async publish(type: string, event: DomainEvent, trace?: TraceParent): Promise<void> {
      const adapter = channels.channelAdapter;
      if (adapter?.createStream && adapter.addPrefixTopic) {
        const subject = adapter.addPrefixTopic(type);
        if (!streams.has(subject)) {
          await adapter.createStream(subject.split(".").join("_"), [subject], {});
          streams.add(subject);
        }
      }
      if (!trace) return channels.sendToChannel(type, event);
      const span = broker.isTracingEnabled()
        ? broker.tracer.startSpan("outbox.publish", {
            type: "outbox",
            traceID: trace.requestID,
            parentID: trace.parentID,
            sampled: trace.sampled,
            service: owner,
            tags: {
              channel: type,
              eventId: event.eventId,
              nodeID: broker.nodeID,
              requestID: trace.requestID,
            },
          })
        : null;
      const headers: Record<string, string> = {
        $requestID: trace.requestID,
        $parentID: span?.id ?? trace.parentID,
        $tracing: String(span?.sampled ?? false),
        $level: "1",
        ...(owner ? { $caller: owner } : {}),
      };
      try {
        await channels.sendToChannel(type, event, { headers });
      } catch (err) {
        span?.setError(err as Error);
        throw err;
      } finally {
        span?.finish();
      }
    },
  };
}

/**
 * The NATS channels adapter hands `url` to the nats client, which ignores credentials in
 * a URL (Moleculer's NATS transporter reads them): split them out into its options.
 */
export function natsConnection(url: string): { url: string; user?: string; pass?: string } {
  const u = new URL(url);
  if (!u.username) return { url };
  const auth = { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) };
  u.username = "";
  u.password = "";
  return { url: u.toString().replace(/\/$/, ""), ...auth };
}
