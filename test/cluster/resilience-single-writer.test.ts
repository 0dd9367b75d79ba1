import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import { startNode, stopAll, uniqueNamespace, type NodeProcess } from "../helpers/cluster";
import { joinProbe, nodeIdOf } from "../helpers/resilience";

/**
 * (g) NeDB keeps a collection in one process's memory: a second process of a stateful
 * service on the same DATA_DIR must refuse to start (and say how to run replicas), while a
 * writer that crashed must not lock its data away for good.
 */
describe("single writer on NeDB files", () => {
  const namespace = uniqueNamespace("rsw");
  let dataDir: string;
  let probe: ServiceBroker | undefined;
  const nodes: NodeProcess[] = [];

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-sw-"));
    probe = await joinProbe(namespace);
  });

  afterAll(async () => {
    await stopAll(nodes);
    await probe?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it("refuses a second users process on the same DATA_DIR, naming MONGO_URI", async () => {
    const first = await startNode({
      name: "users-1",
      services: ["users"],
      namespace,
      env: { DATA_DIR: dataDir },
    });
    nodes.push(first);

    const second = await startNode({
      name: "users-2",
      services: ["users"],
      namespace,
      env: { DATA_DIR: dataDir },
      readyPattern: /MONGO_URI/,
    });
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
    const third = await startNode({
      name: "users-3",
      services: ["users"],
      namespace,
      env: { DATA_DIR: dataDir },
    });
    nodes.push(third);
    expect(third.proc.exitCode).toBeNull();
  });
});
