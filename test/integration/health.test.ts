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
