import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import type { ApiClient } from "../helpers/http";
import { clusterDown, useCluster, waitUntil, type NodeProcess } from "../helpers/cluster";
import { RESILIENCE_ENV, joinProbe, runLoad, sleep } from "../helpers/resilience";

/**
 * (b) SIGKILL one of two catalog replicas under steady load through the gateway: no client
 * sees an error (calls sent to the dead node time out and are retried on the live one), and
 * calls are back to normal once the heartbeat timeout has dropped the dead node. Moleculer
 * checks heartbeats every HEARTBEAT_TIMEOUT s, so a node is dropped 1–2 × that after its
 * last beat.
 */
/** moleculer.config.ts: heartbeatTimeout default (HEARTBEAT_TIMEOUT). */
const HEARTBEAT_TIMEOUT_MS = 3000;
const REQUEST_TIMEOUT_MS = 3000;

describe.skipIf(clusterDown())("a replica killed under load", () => {
  const cluster = useCluster("rfo", { env: RESILIENCE_ENV });
  const victimId = cluster.nodeId("catalog-2");
  let victim: NodeProcess | undefined;
  let probe: ServiceBroker | undefined;
  let client: ApiClient;

  beforeAll(async () => {
    [, victim, { client }, probe] = await Promise.all([
      cluster.node({ name: "catalog-1", services: ["catalog"] }),
      cluster.node({ name: "catalog-2", services: ["catalog"] }),
      cluster.gateway({ env: { READY_SERVICES: "catalog" } }),
      joinProbe(cluster),
    ]);
    await waitUntil(() => probe!.registry.getActionEndpoints("catalog.list")?.count() === 2);
  });

  it("serves every request through the kill and is back to normal after the heartbeat timeout", async () => {
    let killedAt = 0;
    let leftAt = 0;
    const load = runLoad(i => client.get(`/api/tokens?offset=${i % 10}`), {
      workers: 3,
      gapMs: 40,
      durationMs: 2000 + 2 * HEARTBEAT_TIMEOUT_MS + REQUEST_TIMEOUT_MS + 3000,
    });
    await sleep(2000);
    killedAt = Date.now();
    await victim!.kill("SIGKILL");
    // When the probe (configured like the nodes) drops the dead node from its registry.
    const watch = waitUntil(
      () => !probe!.registry.nodes.get(victimId)?.available,
      3 * HEARTBEAT_TIMEOUT_MS,
      50,
    ).then(() => {
      leftAt = Date.now();
    });
    const [samples] = await Promise.all([load, watch]);

    // Zero client-visible errors.
    const failed = samples.filter(s => s.error || s.value?.status !== 200);
    expect(failed.map(s => s.value?.status ?? String(s.error))).toEqual([]);
    expect(samples.filter(s => s.startedAt < killedAt).length).toBeGreaterThan(20);

    // Some calls did go to the dead node and waited for their timeout before the retry ...
    const slow = samples.filter(s => s.ms >= REQUEST_TIMEOUT_MS - 500);
    expect(slow.length).toBeGreaterThan(0);
    // ... but only until the dead node was dropped, within 2 × the heartbeat timeout.
    expect(leftAt - killedAt).toBeLessThan(2 * HEARTBEAT_TIMEOUT_MS + 1000);
    const lastSlowStart = Math.max(...slow.map(s => s.startedAt));
    expect(lastSlowStart - killedAt).toBeLessThan(2 * HEARTBEAT_TIMEOUT_MS + 1000);
    const afterwards = samples.filter(
      s => s.startedAt > killedAt + 2 * HEARTBEAT_TIMEOUT_MS + 1000,
    );
    expect(afterwards.length).toBeGreaterThan(20);
    expect(Math.max(...afterwards.map(s => s.ms))).toBeLessThan(1000);
  });
});
