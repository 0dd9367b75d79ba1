import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import { clusterDown, nodeIdOf, useCluster, type NodeProcess } from "../helpers/cluster";
import { joinProbe } from "../helpers/resilience";

/**
 * (g) NeDB keeps a collection in one process's memory: a second process of a stateful
 * service on the same DATA_DIR must refuse to start (and say how to run replicas), while a
 * writer that crashed must not lock its data away for good.
 */
describe.skipIf(clusterDown())("single writer on NeDB files", () => {
  const cluster = useCluster("rsw");
  const { namespace } = cluster;
  const dataDir = cluster.tempDir("sw");
  let probe: ServiceBroker | undefined;
  const nodes: NodeProcess[] = [];
  /** A users process on the shared DATA_DIR, ready at its first line matching `readyPattern`. */
  const startUsers = (name: string, readyPattern?: RegExp) =>
    cluster.node({ name, services: ["users"], env: { DATA_DIR: dataDir }, readyPattern });

  beforeAll(async () => {
    probe = await joinProbe(cluster);
  });

  it("refuses a second users process on the same DATA_DIR, naming MONGO_URI", async () => {
    const first = await startUsers("users-1");
    nodes.push(first);

    const second = await startUsers("users-2", /MONGO_URI/);
    nodes.push(second);
    const line = second.lines.find(l => /MONGO_URI/.test(l)) ?? "";
    expect(line).toContain(`in use by process ${first.proc.pid}`);
    expect(line).toMatch(/single-writer/);
    expect(await second.exited).not.toBe(0);
    expect(second.lines.some(l => /started successfully/.test(l))).toBe(false);

    // The first writer is untouched and still answers.
    expect(first.proc.exitCode).toBeNull();
    await probe!.waitForServices(["users"], 10_000);
    await expect(
      probe!.call("users.get", { id: "nobody" }, { nodeID: nodeIdOf("users-1", namespace) }),
    ).rejects.toMatchObject({ code: 404, type: "NOT_FOUND" });
  });

  it("lets a new process start after the writer was SIGKILLed (stale lock)", async () => {
    await nodes[0].kill("SIGKILL");
    const third = await startUsers("users-3");
    nodes.push(third);
    expect(third.proc.exitCode).toBeNull();
  });
});
