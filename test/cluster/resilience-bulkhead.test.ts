import { beforeAll, describe, expect, it } from "vitest";
import { type ApiClient, registerUser } from "../helpers/http";
import { clusterDown, useCluster, type NodeProcess } from "../helpers/cluster";
import { RESILIENCE_ENV, runLoad } from "../helpers/resilience";

/**
 * (d) Bulkheads are per action: a flood of slow calls to users.get fills users.get's slots
 * and queue (the overflow is refused at once, the process stays up), while users.me on the
 * same node keeps answering quickly. One shared queue would hold users.me behind the flood
 * past its 3 s timeout (4 slots × 1 s per call × the queue ahead of it).
 */
const SLOW_MS = 1000;

describe.skipIf(clusterDown())("bulkhead per action", () => {
  const cluster = useCluster("rbh", { env: RESILIENCE_ENV });
  let users: NodeProcess | undefined;
  let client: ApiClient;
  let token: string;

  beforeAll(async () => {
    [users, { client }] = await Promise.all([
      cluster.node({
        name: "users",
        services: ["users"],
        env: {
          FAULTS: `users.get:delay=${SLOW_MS}ms`,
          BULKHEAD_CONCURRENCY: "4",
          BULKHEAD_QUEUE: "4",
        },
      }),
      cluster.gateway({ env: { READY_SERVICES: "users" } }),
    ]);
    token = (await registerUser(client, "bulkhead")).token;
  });

  it("keeps another action of the flooded service fast, and refuses the overflow cleanly", async () => {
    let flooding = true;
    // 40 clients hammering the slow action (uncached ids, so each call reaches the handler).
    const flood = runLoad(i => client.get(`/api/users/flood-${i}`), {
      workers: 40,
      durationMs: 3000,
    }).finally(() => {
      flooding = false;
    });
    // Meanwhile one client reads its own profile from the same users node.
    const probe = runLoad(() => client.get("/api/users/me", { token }), {
      workers: 1,
      durationMs: 3500,
      gapMs: 100,
      stop: () => !flooding,
    });
    const [floodSamples, meSamples] = await Promise.all([flood, probe]);

    const floodStatuses = new Set(floodSamples.map(s => s.value?.status ?? 0));
    // The flood's overflow is refused at once (QUEUE_FULL, which the gateway answers as 503
    // with Retry-After); the part that fits is served (404: ids that do not exist, after the
    // injected delay). No 500s, no dropped connections.
    expect([...floodStatuses].sort()).toEqual([404, 503]);
    const refused = floodSamples.find(s => s.value?.status === 503)!.value!;
    expect(refused.body).toMatchObject({ error: { type: "SERVICE_UNAVAILABLE" } });
    expect(refused.headers.get("retry-after")).toBe("1");

    expect(meSamples.length).toBeGreaterThan(10);
    expect(meSamples.every(s => s.value?.status === 200)).toBe(true);
    // Far under the 3 s request timeout; the slow action takes SLOW_MS per call.
    expect(Math.max(...meSamples.map(s => s.ms))).toBeLessThan(SLOW_MS);

    // The node survived the flood and serves the flooded action again once its queue drained.
    expect(users!.proc.exitCode).toBeNull();
    // (The breaker does not count a full queue as a fault; if it did, the burst would have
    // turned into CB_HALF_OPEN_MS of 503s for users.get.)
    const after = await client.get("/api/users/after-flood");
    expect(after.status).toBe(404);
  });
});
