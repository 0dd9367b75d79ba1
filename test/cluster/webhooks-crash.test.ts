import type { ServiceBroker } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetStreamChannels } from "../helpers/channels";
import { NATS_URL, clusterDown, useCluster, waitUntil, type NodeProcess } from "../helpers/cluster";
import { registerUser, type ApiClient, type Registered } from "../helpers/http";
import { activityRow, publishRows, startWebhookReceiver, type Receiver } from "../helpers/webhooks";

/**
 * The webhooks process is SIGKILLed while it retries deliveries to a receiver that
 * fails the first attempts of every event, more rows are published while it is down,
 * and a new process starts on the same data. The receiver ends up with every event:
 * each webhook-id at least once with a 2xx, every request correctly signed, and each
 * event's requests all carrying its one webhook-id. Nothing acknowledged is lost.
 */

const FAILS = 3; // the receiver answers 503 to an event's first three attempts

describe.skipIf(clusterDown())("webhooks survive a SIGKILL mid-retry", () => {
  const cluster = useCluster("whcrash");
  const dataDir = cluster.tempDir("webhooks");
  const env = {
    DATA_DIR: dataDir,
    CHANNELS_URL: NATS_URL,
    WEBHOOKS_ALLOW_PRIVATE: "true",
    WEBHOOKS_RETRY_DELAYS_MS: "400,800,1200,1600,2000,2500",
    WEBHOOKS_POLL_MS: "100",
    // An event the killed node took but had not acknowledged comes back soon.
    CHANNELS_ACK_WAIT_MS: "3000",
  };
  let webhooks: NodeProcess | undefined;
  let publisher: ServiceBroker;
  let client: ApiClient;
  let owner: Registered;
  let receiver: Receiver;
  const delivered = new Set<string>();

  const startWebhooks = (name: string) => cluster.node({ name, services: ["webhooks"], env });

  beforeAll(async () => {
    receiver = await startWebhookReceiver((hit, n, res) => {
      if (n <= FAILS) return res.writeHead(503).end();
      delivered.add(hit.id);
      res.writeHead(200).end();
    });
    let gateway;
    [webhooks, gateway, publisher] = await Promise.all([
      startWebhooks("webhooks-1"),
      cluster.gateway({ services: ["users"], env: { READY_SERVICES: "users,webhooks" } }),
      // Publishes as the activity service's outbox does: sendToChannel on the same JetStream.
      cluster.broker({ transporter: null, middlewares: [jetStreamChannels(NATS_URL)] }),
    ]);
    client = gateway.client;
    owner = await registerUser(client, "hooked");
  });
  afterAll(() => receiver?.close());

  it("delivers every event, signed, after the delivering node was killed mid-retry", async () => {
    const created = await client.post<{ id: string; secret: string }>(
      "/api/webhooks",
      { url: receiver.url, events: ["*"] },
      { token: owner.token },
    );
    expect(created.status).toBe(201);
    const secret = created.body.secret;

    const before = Array.from({ length: 20 }, () => activityRow(owner.id));
    await publishRows(publisher, before);
    // Mid-retry: every event has been tried and refused at least once, none delivered yet.
    await waitUntil(() => before.every(r => receiver.attemptsOf(r.id) >= 1), 20_000, 20);
    expect(delivered.size).toBe(0);
    await webhooks!.kill("SIGKILL");

    // Acknowledged by JetStream while no webhooks node runs.
    const during = Array.from({ length: 10 }, () => activityRow(owner.id));
    await publishRows(publisher, during);

    webhooks = await startWebhooks("webhooks-2");
    const all = [...before, ...during];
    await waitUntil(() => all.every(r => delivered.has(r.id)), 60_000, 100);

    expect(receiver.allSigned(secret)).toBe(true);
    for (const row of all) {
      const hits = receiver.hits.filter(h => h.id === row.id);
      expect(hits.length).toBeGreaterThanOrEqual(FAILS + 1);
      expect(new Set(hits.map(h => h.body))).toEqual(new Set([JSON.stringify(row)]));
    }
    // Nothing the receiver got that was not published.
    expect(new Set(receiver.hits.map(h => h.id))).toEqual(new Set(all.map(r => r.id)));
  });
});
