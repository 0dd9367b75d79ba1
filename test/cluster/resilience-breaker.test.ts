import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import { type ApiClient, registerUser } from "../helpers/http";
import { clusterDown, useCluster, waitUntil } from "../helpers/cluster";
import { RESILIENCE_ENV, faultHits, joinProbe, setFaults, sleep } from "../helpers/resilience";

/**
 * (c) A downstream that fails every call opens the gateway's circuit breaker: clients get
 * fast 503s and the calls no longer reach the node; after CB_HALF_OPEN_MS one trial call
 * goes through (half-open); once the node recovers the breaker closes.
 */
const HALF_OPEN_MS = 2000;

describe.skipIf(clusterDown())("circuit breaker between the gateway and users", () => {
  const cluster = useCluster("rcb", { env: RESILIENCE_ENV });
  const usersId = cluster.nodeId("users");
  let probe: ServiceBroker | undefined;
  let client: ApiClient;
  /** A user no call has read yet: its first read must reach the users node (no cache hit). */
  let freshUserPath: string;
  // users.get answers from its cache before the handler (where faults act): unread ids only.
  let n = 0;
  const missing = () => `/api/users/missing-${n++}`;

  beforeAll(async () => {
    [, { client }, probe] = await Promise.all([
      cluster.node({ name: "users", services: ["users"] }),
      cluster.gateway({
        env: {
          READY_SERVICES: "users",
          CB_MIN_REQUESTS: "4",
          CB_HALF_OPEN_MS: String(HALF_OPEN_MS),
        },
      }),
      joinProbe(cluster),
    ]);
    const user = await registerUser(client, "breaker");
    freshUserPath = `/api/users/${user.id}`;
    expect((await client.get(missing())).status).toBe(404);
  });

  const hits = async () => (await faultHits(probe!, usersId))["users.get"] ?? 0;

  it("opens on failures, fails fast, half-opens and closes on recovery", async () => {
    await setFaults(probe!, usersId, "users.get:abort=503");

    // Failing: each request is retried (all attempts fail), until the breaker opens.
    const before: Array<{ status: number; ms: number }> = [];
    let opened = false;
    for (let i = 0; i < 20 && !opened; i++) {
      const h0 = await hits();
      const t0 = Date.now();
      const res = await client.get(missing());
      before.push({ status: res.status, ms: Date.now() - t0 });
      // Open: the gateway refused without calling users at all.
      opened = res.status === 503 && (await hits()) === h0;
    }
    expect(before.every(r => r.status === 503)).toBe(true);
    expect(opened).toBe(true);
    // Nothing internal leaks: the error shape of docs/api.md for an unavailable service.
    const open = await client.get(missing());
    expect(open.status).toBe(503);
    expect(open.body).toMatchObject({ error: { type: "SERVICE_UNAVAILABLE" } });
    expect(open.headers.get("retry-after")).toBe("1");

    // While open, calls do not reach the node and are answered at once.
    const h1 = await hits();
    const fast: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = Date.now();
      expect((await client.get(missing())).status).toBe(503);
      fast.push(Date.now() - t0);
    }
    expect(await hits()).toBe(h1);
    const failedSlow = Math.max(...before.slice(0, 1).map(r => r.ms));
    expect(Math.max(...fast)).toBeLessThan(Math.max(failedSlow, 250));

    // Half-open after HALF_OPEN_MS: one trial call reaches users, fails, the breaker re-opens.
    await sleep(HALF_OPEN_MS + 500);
    expect((await client.get(missing())).status).toBe(503);
    const h2 = await hits();
    expect(h2).toBeGreaterThan(h1);
    expect((await client.get(missing())).status).toBe(503);
    expect(await hits()).toBe(h2);

    // Recovery: the next trial succeeds and the breaker closes for good. (A trial that ends
    // in a client error, e.g. 404, counts as neither success nor failure in Moleculer's
    // breaker: it stays half-open, so the trial reads a user that exists.)
    await setFaults(probe!, usersId, "");
    const recoveredAt = Date.now();
    await waitUntil(
      async () => (await client.get(freshUserPath)).status === 200,
      4 * HALF_OPEN_MS,
      200,
    );
    expect(Date.now() - recoveredAt).toBeLessThan(2 * HALF_OPEN_MS + 1500);
    for (let i = 0; i < 10; i++) expect((await client.get(missing())).status).toBe(404);

    // A non-retryable abort fails the request on its first attempt: no retries.
    await setFaults(probe!, usersId, "users.get:abort=503:retryable=false");
    const h3 = await hits();
    expect((await client.get(missing())).status).toBe(503);
    expect((await hits()) - h3).toBe(1);
    await setFaults(probe!, usersId, "");
  });
});
