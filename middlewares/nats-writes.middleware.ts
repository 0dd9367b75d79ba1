import { Transporters, type Middleware, type ServiceBroker } from "moleculer";
import { coalesceWrites } from "../lib/messaging/nats-writes";
import { defineMiddleware } from "../mixins/define";

/**
 * Moleculer's NATS transporter writes to its socket once per turn of the event loop
 * (lib/messaging/nats-writes.ts says why). Its client is wrapped at the first send after each
 * connect: the transporter makes a new client when it connects anew, and nats' own
 * reconnects keep the wrapped one.
 */
export function NatsWritesMiddleware(): Middleware {
  let broker: ServiceBroker | null = null;
  let seen: unknown = null;
  return defineMiddleware({
    name: "NatsWrites",
    created(b: ServiceBroker) {
      broker = b;
    },
    transporterSend(next: (topic: string, data: Buffer, meta: object) => Promise<void>) {
      return (topic: string, data: Buffer, meta: object) => {
        const tx = broker?.transit?.tx;
        if (tx instanceof Transporters.NATS && tx.client && tx.client !== seen) {
          seen = tx.client;
          if (!coalesceWrites(tx.client))
            broker?.logger.warn("NATS client internals changed: writes are not coalesced");
        }
        return next(topic, data, meta);
      };
    },
    // Moleculer's typings say the hook returns the send's promise; it returns the wrapped send.
  });
}
