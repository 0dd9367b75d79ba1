import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import type { ApiClient } from "../helpers/http";
import { clusterDown, useCluster, waitUntil } from "../helpers/cluster";
import { RESILIENCE_ENV, joinProbe, runLoad, setFaults } from "../helpers/resilience";

/**
 * (e) A weighted canary split, (f) exact routing by the `x-version` header, both done by the
 * gateway (TrafficMixin) between catalog v1 (unversioned) and catalog v2 (`v2.catalog.*`,
 * answers carry `catalogVersion: 2`); and v2's read fallback when v1 fails.
 */
interface ListBody {
  rows: unknown[];
  total: number;
  catalogVersion?: number;
}

describe.skipIf(clusterDown())("catalog v1/v2 traffic through the gateway", () => {
  const cluster = useCluster("rtr", { env: RESILIENCE_ENV });
  let probe: ServiceBroker | undefined;
  let client: ApiClient;

  beforeAll(async () => {
    [, , { client }, probe] = await Promise.all([
      cluster.node({ name: "catalog-v1", services: ["catalog"] }),
      cluster.node({ name: "catalog-v2", services: ["catalog.v2"] }),
      cluster.gateway({ env: { READY_SERVICES: "catalog", CANARY: "catalog:v1=90,v2=10" } }),
      joinProbe(cluster),
    ]);
    // Ready once the gateway routes to both versions.
    await waitUntil(async () => {
      const res = await client.get<ListBody>("/api/tokens", { headers: { "x-version": "v2" } });
      return res.status === 200 && res.body.catalogVersion === 2;
    });
  });

  it("splits 1,000 calls 90/10 within ±5 points", async () => {
    const total = 1000;
    let sent = 0;
    const samples = await runLoad(
      () => {
        sent++;
        return client.get<ListBody>(`/api/tokens?offset=${sent % 10}`);
      },
      { workers: 8, durationMs: 60_000, stop: () => sent >= total },
    );
    expect(samples).toHaveLength(total);
    expect(samples.filter(s => s.value?.status !== 200)).toEqual([]);
    const toV2 = samples.filter(s => s.value?.body.catalogVersion === 2).length;
    expect(toV2 / total).toBeGreaterThanOrEqual(0.05);
    expect(toV2 / total).toBeLessThanOrEqual(0.15);
  });

  it("routes by x-version exactly", async () => {
    for (let i = 0; i < 30; i++) {
      const two = await client.get<ListBody>("/api/tokens", { headers: { "x-version": "v2" } });
      expect(two.status).toBe(200);
      expect(two.body.catalogVersion).toBe(2);
      const one = await client.get<ListBody>("/api/tokens", { headers: { "x-version": "1" } });
      expect(one.status).toBe(200);
      expect(one.body).not.toHaveProperty("catalogVersion");
    }
    // A version nobody serves is unavailable, not silently another version.
    const v3 = await client.get("/api/tokens", { headers: { "x-version": "v3" } });
    expect(v3.status).toBe(503);
    expect(v3.body).toMatchObject({ error: { type: "SERVICE_UNAVAILABLE" } });
    const bad = await client.get("/api/tokens", { headers: { "x-version": "beta" } });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({
      error: { type: "VALIDATION_ERROR", data: [{ field: "x-version" }] },
    });
    // Routes of services without a split ignore the header.
    const health = await client.get("/health/ready", { headers: { "x-version": "v2" } });
    expect(health.status).toBe(200);
  });

  it("serves v2 reads from their last good answer while v1 fails", async () => {
    const path = "/api/tokens?limit=7&sort=holders";
    const v2Headers = { "x-version": "v2" };
    const good = await client.get<ListBody>(path, { headers: v2Headers });
    expect(good.status).toBe(200);
    expect(good.headers.get("x-fallback")).toBeNull();

    // v1 (which v2 reads through) fails every list; its cache is emptied so calls reach it.
    await setFaults(probe!, cluster.nodeId("catalog-v1"), "catalog.list:abort=503");
    await probe!.broadcast("catalog.changed", { tokenIds: [] });
    try {
      const stale = await client.get<ListBody>(path, { headers: v2Headers });
      expect(stale.status).toBe(200);
      expect(stale.headers.get("x-fallback")).toBe("last-good");
      expect(stale.body).toEqual(good.body);

      // Nothing good was ever answered for these params: the failure shows.
      const other = await client.get("/api/tokens?limit=8", { headers: v2Headers });
      expect(other.status).toBe(503);
      // v1's own clients see the failure too (no fallback configured on v1 yet).
      const direct = await client.get("/api/tokens?limit=9", { headers: { "x-version": "v1" } });
      expect(direct.status).toBe(503);
    } finally {
      await setFaults(probe!, cluster.nodeId("catalog-v1"), "");
    }
    const fresh = await client.get<ListBody>(path, { headers: v2Headers });
    expect(fresh.status).toBe(200);
    expect(fresh.headers.get("x-fallback")).toBeNull();
  });
});
