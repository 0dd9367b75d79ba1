import { randomBytes } from "node:crypto";
import { ServiceBroker } from "moleculer";
import { connect, type NatsConnection } from "nats";
import { afterAll, describe, expect, it } from "vitest";
import { coalesceWrites } from "../../lib/messaging/nats-writes";
import { NatsWritesMiddleware } from "../../middlewares/nats-writes.middleware";
import { NATS_URL, clusterDown, waitUntil } from "../helpers/cluster";

/**
 * NATS writes coalesced per turn of the event loop (lib/messaging/nats-writes.ts), against the real
 * server: what a turn publishes goes out in one socket write, in order, and nothing is
 * held back. Socket writes are counted at the client's transport, the one place that
 * sees them.
 */

interface Counted {
  writes: number;
}

/** Counts the socket writes of `nc` from now on. */
function countWrites(nc: NatsConnection): Counted {
  const transport = (nc as unknown as { protocol: { transport: { send(f: Uint8Array): void } } })
    .protocol.transport;
  const counted = { writes: 0 };
  const send = transport.send.bind(transport);
  transport.send = (frame: Uint8Array) => {
    counted.writes++;
    send(frame);
  };
  return counted;
}

const server = NATS_URL.replace(/^nats:\/\//, "");
const open: NatsConnection[] = [];
const conn = async () => {
  const nc = await connect({ servers: server });
  open.push(nc);
  return nc;
};

afterAll(async () => {
  await Promise.all(open.map(nc => nc.close()));
});

/** Publishes `n` messages on `subject`, each from an I/O-like callback of its own in one turn. */
function publishInOneTurn(nc: NatsConnection, subject: string, n: number): void {
  for (let i = 0; i < n; i++) setImmediate(() => nc.publish(subject, String(i)));
}

describe.skipIf(clusterDown())("NATS writes, one per turn", () => {
  it("sends what one turn published in one write, every message in order", async () => {
    const receiver = await conn();
    const subject = `mm-writes-${randomBytes(4).toString("hex")}`;
    const got: string[] = [];
    const sub = receiver.subscribe(subject);
    void (async () => {
      for await (const m of sub) got.push(m.string());
    })();
    await receiver.flush();

    const plain = await conn();
    const plainWrites = countWrites(plain);
    publishInOneTurn(plain, subject, 100);
    await waitUntil(() => got.length === 100, 5000);
    // Without the wrap each callback's publish is a write of its own.
    expect(plainWrites.writes).toBeGreaterThanOrEqual(50);

    const sender = await conn();
    expect(coalesceWrites(sender)).toBe(true);
    expect(coalesceWrites(sender)).toBe(true); // once only, however often asked
    const writes = countWrites(sender);
    publishInOneTurn(sender, subject, 100);
    await waitUntil(() => got.length === 200, 5000);
    expect(writes.writes).toBeLessThanOrEqual(2);
    expect(got.slice(100)).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
  });

  it("writes at once past the client's pending limit, and flush() still round-trips", async () => {
    const nc = await conn();
    coalesceWrites(nc);
    const writes = countWrites(nc);
    const limit = (nc as unknown as { protocol: { pendingLimit: number } }).protocol.pendingLimit;
    nc.publish(`mm-writes-big-${randomBytes(4).toString("hex")}`, new Uint8Array(limit + 1));
    // The client's own flush, a microtask later, writes it: no wait for the turn's end.
    await Promise.resolve();
    expect(writes.writes).toBe(1);
    await nc.flush(); // PING/PONG through the deferred path
    expect(writes.writes).toBe(2);
  });

  it("coalesces a broker's NATS transporter: 200 calls in one turn go out in a few writes", async () => {
    const namespace = `mm-writes-${randomBytes(3).toString("hex")}`;
    const make = (nodeID: string) =>
      new ServiceBroker({
        namespace,
        nodeID,
        transporter: NATS_URL as "NATS",
        logger: false,
        middlewares: [NatsWritesMiddleware()],
      });
    const callee = make("callee");
    callee.createService({
      name: "echo",
      actions: { say: { params: { n: "number" }, handler: ctx => ctx.params.n } },
    });
    const caller = make("caller");
    try {
      await Promise.all([callee.start(), caller.start()]);
      await caller.waitForServices("echo", 10_000);
      await caller.call("echo.say", { n: -1 }); // the client is wrapped at its first send
      const client = (caller.transit!.tx as unknown as { client: NatsConnection }).client;
      const writes = countWrites(client);
      // Each call from a callback of its own, as requests arriving on separate sockets are.
      const answers = await Promise.all(
        Array.from(
          { length: 200 },
          (_, n) =>
            new Promise<unknown>(resolve =>
              setImmediate(() => resolve(caller.call("echo.say", { n }))),
            ),
        ),
      );
      expect(answers).toEqual(Array.from({ length: 200 }, (_, n) => n));
      // All 200 requests were made in one turn: one write, plus whatever heartbeats fell in
      // (200 without the middleware).
      expect(writes.writes).toBeLessThanOrEqual(5);
    } finally {
      await Promise.all([caller.stop(), callee.stop()]);
    }
  });
});
