import type { ServiceBroker } from "moleculer";
import { beforeAll, describe, expect, it } from "vitest";
import type { DomainEvent } from "../../lib/events/domain";
import type { CatalogToken } from "../../lib/read-models/read-model";
import { NATS_URL, clusterDown, useCluster, waitUntil, type NodeProcess } from "../helpers/cluster";
import { TokenScript, jetStreamChannels, sendAll } from "../helpers/channels";
import type { ApiClient } from "../helpers/http";

/**
 * The catalog as its own process on NATS JetStream: it is killed in the middle of a
 * burst, everything it had seen is published again (an outbox relay re-sending after a
 * crash), and it must catch up from its durable consumer to exactly the right stats.
 */

type List = { rows: CatalogToken[]; total: number };

describe.skipIf(clusterDown())(
  "catalog catches up after a crash and stays exact under redelivery",
  () => {
    const cluster = useCluster("catrd");
    const dataDir = cluster.tempDir("catalog");
    let catalog: NodeProcess | undefined;
    let publisher: ServiceBroker;
    let client: ApiClient;

    const startCatalog = () =>
      cluster.node({
        name: "catalog",
        services: ["catalog"],
        env: { CHANNELS_URL: NATS_URL, DATA_DIR: dataDir },
      });

    beforeAll(async () => {
      [catalog, { client }, publisher] = await Promise.all([
        startCatalog(),
        cluster.gateway({ env: { READY_SERVICES: "catalog" } }),
        // Publishes as the write model does: sendToChannel on the same JetStream, same namespace.
        cluster.broker({ transporter: null, middlewares: [jetStreamChannels(NATS_URL)] }),
      ]);
    });

    const getToken = (id: string) => client.get<CatalogToken>(`/api/tokens/${id}`);

    it("ends with exact holders and transfers", async () => {
      const accounts = ["alice", "bob", "carol", "dave", "erin"];
      const s = new TokenScript({
        creatorId: "alice",
        name: "Redelivered",
        totalSupply: "1000000",
      });
      const doomed = new TokenScript({ creatorId: "alice", name: "Doomed" });
      const seen: DomainEvent[] = [s.created(), doomed.created()];
      let n = 0;
      const nextTransfers = (count: number) =>
        Array.from({ length: count }, () => {
          n++;
          const from = s.amountOf(accounts[n % 5]) >= BigInt(n) ? accounts[n % 5] : "alice";
          return s.transfer(from, accounts[(n * 3 + 1) % 5], String(n));
        });

      // 1. A first batch, every event twice.
      const first = nextTransfers(20);
      seen.push(...first);
      await sendAll(publisher, [...seen, ...seen]);
      await waitUntil(
        async () => (await getToken(s.token.id)).body.stats?.transfers === 20,
        30_000,
      );
      expect((await getToken(s.token.id)).body.stats).toEqual({
        holders: s.holders(),
        transfers: 20,
      });

      // 2. A burst, and the catalog dies while it works through it.
      const burst = nextTransfers(40);
      seen.push(...burst);
      await sendAll(publisher, burst);
      await catalog!.kill("SIGKILL");

      // 3. While it is down: everything is published again, plus new changes.
      const later = [...nextTransfers(10), s.updated({ name: "Caught Up" }), doomed.deleted()];
      await sendAll(publisher, [...seen, ...later]);

      // 4. Back up on the same data: it resumes its durable consumer and catches up.
      catalog = await startCatalog();
      await waitUntil(
        async () => {
          const res = await getToken(s.token.id);
          return res.body.stats?.transfers === 70 && res.body.name === "Caught Up";
        },
        60_000,
        250,
      );
      await waitUntil(async () => (await getToken(doomed.token.id)).status === 404, 10_000);

      // Redeliveries still in the pipe (an unacknowledged message comes back after the
      // consumer's ack wait) must change nothing.
      await sendAll(publisher, [...seen, ...later].reverse());
      // A channel is consumed in order (one message in flight): once a transfer sent after
      // the duplicates is in, every duplicate transfer before it has been handled.
      const sentinel = new TokenScript({ creatorId: "sentinel" });
      await sendAll(publisher, [sentinel.created(), sentinel.transfer("sentinel", "x", "1")]);
      await waitUntil(
        async () => (await getToken(sentinel.token.id)).body.stats?.transfers === 1,
        30_000,
      );
      const token = (await getToken(s.token.id)).body;
      expect(token.stats).toEqual({ holders: s.holders(), transfers: 70 });
      const list = await client.get<List>(`/api/tokens?creator=alice`);
      expect(list.body.total).toBe(1);
      expect(list.body.rows[0]).toEqual(token);
    });
  },
);
