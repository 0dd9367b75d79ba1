import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import type { ApiClient } from "../helpers/http";
import { clusterDown, useCluster } from "../helpers/cluster";
import { RESILIENCE_ENV, faultHits, joinProbe, setFaults } from "../helpers/resilience";

/**
 * Per-route retries, as a VirtualService's `retries` per route: the read routes keep the
 * broker's retries (RETRIES, 3) for a retryable failure, while the login route sets
 * `callOptions.retries: 0` (a retried login would only add scrypt work to a busy node).
 */
describe.skipIf(clusterDown())("retries per gateway route", () => {
  const cluster = useCluster("rrr", { env: RESILIENCE_ENV });
  const usersId = cluster.nodeId("users");
  let probe: ServiceBroker | undefined;
  let client: ApiClient;

  beforeAll(async () => {
    [, { client }, probe] = await Promise.all([
      cluster.node({ name: "users", services: ["users"] }),
      cluster.gateway({ env: { READY_SERVICES: "users" } }),
      joinProbe(cluster),
    ]);
  });

  it("retries a failing read three times, a failing login not at all", async () => {
    // 503 aborts are retryable: only the route's settings decide how often it is tried.
    await setFaults(probe!, usersId, "users.get:abort=503;users.login:abort=503");
    try {
      const read = await client.get("/api/users/usr_never_read");
      expect(read.status).toBe(503);
      const login = await client.post("/api/auth/login", {
        email: "nobody@example.com",
        password: "correct horse battery",
      });
      expect(login.status).toBe(503);
      const hits = await faultHits(probe!, usersId);
      expect(hits["users.get"]).toBe(4);
      expect(hits["users.login"]).toBe(1);
    } finally {
      await setFaults(probe!, usersId, "");
    }
  });
});
