import type { ServiceBroker } from "moleculer";
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
