import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import { clusterDown, useCluster } from "../helpers/cluster";
import { RESILIENCE_ENV, callAndSee, joinProbe, runLoad } from "../helpers/resilience";

/**
 * (a) Discovery: a second replica of a stateless service, started while calls run, takes its
 * share of them within about a second of its start, with no configuration anywhere.
 * A probe broker joined to the namespace makes the calls, so it can see which node answered.
 */
describe.skipIf(clusterDown())("a new catalog replica joins under load", () => {
  const cluster = useCluster("rdi", { env: RESILIENCE_ENV });
  const second = cluster.nodeId("catalog-2");
  let probe: ServiceBroker | undefined;

  beforeAll(async () => {
    [, probe] = await Promise.all([
      cluster.node({ name: "catalog-1", services: ["catalog"] }),
      joinProbe(cluster),
    ]);
    await probe.waitForServices(["catalog"], 10_000);
  });

  it("sends the new replica its share within about a second of its start", async () => {
    let startedAt = 0;
    let failedToStart = false;
    const load = runLoad(i => callAndSee(probe!, "catalog.list", { offset: i % 10 }), {
      workers: 2,
      gapMs: 20,
      // Bounded: 3 s after the replica started, or 30 s at most.
      durationMs: 30_000,
      stop: () => failedToStart || (startedAt > 0 && Date.now() > startedAt + 3000),
    });
    try {
      await cluster.node({ name: "catalog-2", services: ["catalog"] });
      startedAt = Date.now();
    } catch (err) {
      failedToStart = true;
      throw err;
    } finally {
      await load.catch(() => undefined);
    }
    const samples = await load;

    expect(samples.filter(s => s.error)).toEqual([]);
    const first = samples.find(s => s.value?.nodeID === second);
    expect(first, "the new replica never answered").toBeDefined();
    expect(first!.startedAt - startedAt).toBeLessThan(1500);

    // From then on round-robin gives it about half.
    const after = samples.filter(s => s.startedAt > startedAt + 1500);
    expect(after.length).toBeGreaterThan(20);
    const share = after.filter(s => s.value?.nodeID === second).length / after.length;
    expect(share).toBeGreaterThan(0.3);
    expect(share).toBeLessThan(0.7);
  });
});
