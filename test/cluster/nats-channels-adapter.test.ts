import { randomBytes } from "node:crypto";
import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { connect, type NatsConnection } from "nats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerNatsChannelsAdapter } from "../../lib/messaging/nats-channels-adapter";
import { channelsOf } from "../../middlewares/channels";
import { NATS_URL, clusterDown, deleteNamespaceStreams, waitUntil } from "../helpers/cluster";

/**
 * The channels adapter the platform uses over NATS (lib/messaging/nats-channels-adapter.ts), on the
 * real JetStream: a consumer acknowledges each event with one message, and "still working"
 * goes out only for a handler that runs past half the ack wait, which keeps such a slow
 * handler's event from being delivered again while it runs. What goes to the server is
 * read off the wire by a plain subscriber to the ack subjects.
 */

const ACK_WAIT_MS = 1000;

describe.skipIf(clusterDown())("channels over NATS: acknowledgements", () => {
  const namespace = `mm-acks-${randomBytes(3).toString("hex")}`;
  let broker: ServiceBroker;
  let wire: NatsConnection;
  const acks: string[] = [];
  const handled: Array<{ n: number; at: number }> = [];
  let slowMs = 0;

  beforeAll(async () => {
    registerNatsChannelsAdapter();
    wire = await connect({ servers: new URL(NATS_URL).host });
    const sub = wire.subscribe(`$JS.ACK.${namespace}_acks_test.>`);
    void (async () => {
      for await (const m of sub) acks.push(m.string());
    })();
    await wire.flush();

    broker = new ServiceBroker({
      namespace,
      nodeID: `acks-${namespace}`,
      logger: false,
      middlewares: [
        ChannelsMiddleware({
          adapter: {
            type: "MintmeshNATS",
            options: {
              maxInFlight: 1,
              maxRetries: 3,
              deadLettering: { enabled: false },
              nats: {
                url: NATS_URL,
                connectionOptions: {},
                streamConfig: {},
                consumerOptions: { config: { ack_wait: ACK_WAIT_MS * 1e6 } },
              },
            },
          },
        } as Parameters<typeof ChannelsMiddleware>[0]),
      ],
    });
    const schema = {
      name: "consumer",
      channels: {
        "acks.test": {
          group: "consumer",
          async handler(payload: { n: number }) {
            handled.push({ n: payload.n, at: Date.now() });
            if (payload.n < 0) await new Promise(r => setTimeout(r, slowMs));
          },
        },
      },
    } as unknown as ServiceSchema;
    broker.createService(schema);
    await broker.start();
  });

  afterAll(async () => {
    await broker?.stop();
    await wire?.close();
    await deleteNamespaceStreams(NATS_URL, namespace);
  });

  it("acknowledges each event with one message, and sends no 'working' for a quick handler", async () => {
    const channels = channelsOf(broker);
    for (let n = 0; n < 20; n++) await channels.sendToChannel("acks.test", { n });
    await waitUntil(() => handled.length === 20 && acks.length >= 20, 10_000, 20);
    await new Promise(r => setTimeout(r, 200)); // anything more would be on the wire by now
    expect(handled.map(h => h.n)).toEqual(Array.from({ length: 20 }, (_, n) => n));
    expect(acks.filter(a => a === "+ACK")).toHaveLength(20);
    expect(acks.filter(a => a === "+WPI")).toHaveLength(0);
    expect(acks).toHaveLength(20);
  });

  it("sends 'working' for a handler past half the ack wait, and its event is not delivered again", async () => {
    acks.length = 0;
    handled.length = 0;
    slowMs = ACK_WAIT_MS * 1.4; // past the ack wait: without 'working' it would be redelivered
    await channelsOf(broker).sendToChannel("acks.test", { n: -1 });
    await waitUntil(() => acks.includes("+ACK"), 10_000, 20);
    await new Promise(r => setTimeout(r, ACK_WAIT_MS)); // a redelivery would have come by now
    expect(handled.map(h => h.n)).toEqual([-1]);
    expect(acks).toEqual(["+WPI", "+ACK"]);
  });
});
