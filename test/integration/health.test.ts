import { describe, expect, it } from "vitest";
import { usePlatform } from "../helpers/platform";

describe("health endpoints", () => {
  const p = usePlatform(["api", "users"], { settings: { api: { readyServices: ["users"] } } });

  it("GET /health/live answers 200 while the process runs", async () => {
    const res = await p.client.get("/health/live");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });

  it("GET /health/ready answers 200 when the services it needs are up", async () => {
    const res = await p.client.get("/health/ready");
    expect(res.status).toBe(200);
  });

  it("GET /health/ready answers 503 naming what is missing", async () => {
    await p.broker.destroyService(p.broker.getLocalService("users")!);
    const res = await p.client.get("/health/ready");
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ status: "unavailable", missing: ["users"] });
  });
});

describe("health endpoints when Redis does not answer", () => {
  // A port nothing listens on: the cacher and the gateway's Redis counters keep retrying.
  const p = usePlatform(["api", "users"], {
    env: { REDIS_URL: "redis://127.0.0.1:9" },
    settings: { api: { readyServices: ["users"] } },
  });

  it("GET /health/ready answers 503 naming redis, once; live stays 200", async () => {
    const res = await p.client.get("/health/ready");
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ status: "unavailable", missing: ["redis"] });
    expect((await p.client.get("/health/live")).status).toBe(200);
  });
});
