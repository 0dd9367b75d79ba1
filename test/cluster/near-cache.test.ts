import type { ServiceBroker } from "moleculer";
import { beforeAll, describe, expect, it } from "vitest";
import type { CatalogToken } from "../../lib/read-models/read-model";
import { NATS_URL, clusterDown, useCluster, waitUntil, type NodeProcess } from "../helpers/cluster";
import { TokenScript, jetStreamChannels, sendAll } from "../helpers/channels";
import type { ApiClient } from "../helpers/http";

/**
 * The gateway's copy of the catalog's reads (lib/gateway/near-cache.ts) with the catalog on a node
 * of its own: a change the catalog applies reaches readers at once although the copy
 * could live a minute, and the copy answers while the catalog is gone.
 */
describe.skipIf(clusterDown())("the gateway's copy of catalog reads", () => {
  const cluster = useCluster("nearc");
  let catalog: NodeProcess;
  let publisher: ServiceBroker;
  let client: ApiClient;

  beforeAll(async () => {
    [catalog, { client }, publisher] = await Promise.all([
      cluster.node({ name: "catalog", services: ["catalog"], env: { CHANNELS_URL: NATS_URL } }),
      cluster.gateway({ env: { READY_SERVICES: "catalog", GATEWAY_CACHE_TTL_MS: "60000" } }),
      cluster.broker({ transporter: null, middlewares: [jetStreamChannels(NATS_URL)] }),
    ]);
  });

  const getToken = (id: string) => client.get<CatalogToken>(`/api/tokens/${id}`);

  /**
   * The catalog sends catalog.changed only to nodes it has discovered: the gateway is ready
   * once it knows the catalog, not the other way round.
   */
  const catalogKnowsGateway = async () => {
    const probe = await cluster.broker();
    await waitUntil(async () => {
      const entry = probe.registry
        .getServiceList({ onlyAvailable: true })
        .find(svc => svc.name === "catalog");
      if (!entry) return false;
      const known = await probe.call<Array<{ name: string }>, object>(
        "$node.services",
        { onlyLocal: false, skipInternal: true },
        { nodeID: entry.nodeID },
      );
      return known.some(svc => svc.name === "api");
    }, 30_000);
  };

  it("forgets a token when the catalog applies a change to it, and answers without the catalog", async () => {
    await catalogKnowsGateway();
    const s = new TokenScript({ creatorId: "alice", name: "Near", totalSupply: "1000" });
    await sendAll(publisher, [s.created()]);
    await waitUntil(async () => (await getToken(s.token.id)).body.stats?.holders === 1, 30_000);
    // Read again: now from the gateway's copy, which may live 60 s.
    expect((await getToken(s.token.id)).body.stats).toEqual({ holders: 1, transfers: 0 });

    await sendAll(publisher, [s.transfer("alice", "bob", "10")]);
    // Well inside the copy's 60 s: catalog.changed dropped it.
    await waitUntil(async () => (await getToken(s.token.id)).body.stats?.transfers === 1, 30_000);
    const fresh = await getToken(s.token.id);
    expect(fresh.body.stats).toEqual({ holders: 2, transfers: 1 });
    // Past the quiet time after the change (GATEWAY_CACHE_QUIET_MS), a read is kept again.
    await new Promise(r => setTimeout(r, 700));
    expect((await getToken(s.token.id)).body).toEqual(fresh.body);

    await catalog.kill("SIGKILL");
    const whileDown = await getToken(s.token.id);
    expect(whileDown.status).toBe(200);
    expect(whileDown.body).toEqual(fresh.body);
  });
});
