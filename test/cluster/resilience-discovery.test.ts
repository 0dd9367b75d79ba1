import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import { stopAll, uniqueNamespace, type NodeProcess } from "../helpers/cluster";
import { callAndSee, joinProbe, nodeIdOf, runLoad, startWiredNode } from "../helpers/resilience";

/**
 * (a) Discovery: a second replica of a stateless service, started while calls run, takes its
 * share of them within about a second of its start, with no configuration anywhere.
 * A probe broker joined to the namespace makes the calls, so it can see which node answered.
 */
describe("a new catalog replica joins under load", () => {
  const namespace = uniqueNamespace("rdi");
  const second = nodeIdOf("catalog-2", namespace);
  const nodes: NodeProcess[] = [];
  let probe: ServiceBroker | undefined;

  beforeAll(async () => {
    const [first, p] = await Promise.all([
      startWiredNode({ name: "catalog-1", services: ["catalog"], namespace }),
      joinProbe(namespace),
    ]);
    nodes.push(first);
    probe = p;
    await probe.waitForServices(["catalog"], 10_000);
  });

  afterAll(async () => {
    await probe?.stop();
    await stopAll(nodes);
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
      nodes.push(await startWiredNode({ name: "catalog-2", services: ["catalog"], namespace }));
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
