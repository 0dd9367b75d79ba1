import { Adapters } from "@moleculer/channels";
import type { JsMsg, NatsError } from "nats";
import { coalesceWrites } from "./nats-writes";

/**
 * @moleculer/channels' NATS (JetStream) adapter, with two changes to how it talks to the
 * server; what it delivers and when it acknowledges are its own:
 *
 *  - its connection writes once per turn of the event loop (lib/messaging/nats-writes.ts);
 *  - "still working" (+WPI) is sent only once a handler has run for half the consumer's
 *    ack wait. The adapter sends it as each message arrives, before the handler starts,
 *    which is one more message per event and per consumer, and moves the redelivery
 *    deadline by no more than the delivery itself did. Sent late, it moves that deadline
 *    for a slow handler, which is what it is for.
 *
 * Registered as adapter type "MintmeshNATS" (registerNatsChannelsAdapter), so each broker
 * a config makes builds its own.
 */

/** NATS' ack wait when a consumer sets none (ms). */
const NATS_DEFAULT_ACK_WAIT_MS = 30_000;

type Settle = "ack" | "nak" | "term";

/** Sends `message`'s working() only after `afterMs`, and not at all once it is settled. */
export function deferWorking(message: JsMsg, afterMs: number): void {
  const working = message.working.bind(message);
  let timer: NodeJS.Timeout | null = null;
  message.working = () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      working();
    }, afterMs);
    timer.unref();
  };
  for (const k of ["ack", "nak", "term"] as Settle[]) {
    const settle = message[k].bind(message) as (...args: unknown[]) => void;
    (message as unknown as Record<Settle, (...args: unknown[]) => void>)[k] = (...args) => {
      if (timer) clearTimeout(timer);
      timer = null;
      settle(...args);
    };
  }
}

interface ConsumerConfigured {
  nats?: { consumerOptions?: { config?: { ack_wait?: number } } };
}

export class NatsChannelsAdapter extends Adapters.NATS {
  override async connect(): Promise<void> {
    await super.connect();
    if (!coalesceWrites(this.connection))
      this.logger.warn("NATS client internals changed: writes are not coalesced");
  }

  override createConsumerHandler(
    chan: Parameters<InstanceType<typeof Adapters.NATS>["createConsumerHandler"]>[0],
  ): (err: NatsError, message: JsMsg) => Promise<void> {
    const handle = super.createConsumerHandler(chan);
    const ns =
      (chan as ConsumerConfigured).nats?.consumerOptions?.config?.ack_wait ??
      (this.opts as ConsumerConfigured).nats?.consumerOptions?.config?.ack_wait;
    const halfMs = (ns ? ns / 1e6 : NATS_DEFAULT_ACK_WAIT_MS) / 2;
    return (err, message) => {
      if (message) deferWorking(message, halfMs);
      return handle(err, message);
    };
  }
}

/** Registers the adapter as type "MintmeshNATS" with @moleculer/channels. */
export function registerNatsChannelsAdapter(): void {
  // The registry takes classes; its typings say instances.
  (Adapters.register as (name: string, value: unknown) => void)(
    "MintmeshNATS",
    NatsChannelsAdapter,
  );
}
