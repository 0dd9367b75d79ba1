import type { AddressInfo } from "node:net";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import ApiService, { type ApiSettings } from "../../../services/api.service";
import { unauthorized } from "../../../lib/shared/errors";
import type { TrafficSettings } from "../../../mixins/traffic.mixin";

/**
 * The gateway in a broker of its own, configured through its settings, in front of a stub
 * users service; driven over HTTP since the HTTP side is what it does.
 */

const UsersStub: ServiceSchema = {
  name: "users",
  actions: {
    login() {
      throw unauthorized("Invalid email or password");
    },
    get() {
      return { id: "usr_1" };
    },
  },
};

/** The gateway with `settings` over its own, and stub services behind it. */
async function startGateway(
  settings: Partial<ApiSettings & TrafficSettings>,
  services: ServiceSchema[] = [UsersStub],
) {
  const broker = new ServiceBroker({ logger: false });
  broker.createService({
    ...ApiService,
    settings: { ...ApiService.settings, port: 0, ip: "127.0.0.1", ...settings },
  });
  for (const service of services) broker.createService(service);
  await broker.start();
  // moleculer-web's HTTP server; its typings don't declare it.
  const api = broker.getLocalService("api") as unknown as { server: { address(): AddressInfo } };
  const base = `http://127.0.0.1:${api.server.address().port}`;
  return { broker, base };
}

const login = (base: string) =>
  fetch(`${base}/api/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: "a@example.com", password: "x" }),
  });

describe("api service settings: rate limits", () => {
  let gw: { broker: ServiceBroker; base: string };
  beforeAll(async () => {
    gw = await startGateway({
      readyServices: ["users"],
      rateLimits: { max: 6, loginMax: 2, windowMs: 3_600_000 },
    });
  });
  afterAll(() => gw.broker.stop());

  it("limits login to rateLimits.loginMax per window, answering 429 with Retry-After", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await login(gw.base)).status);
    expect(statuses).toEqual([401, 401, 429]);
    const res = await login(gw.base);
    expect(res.headers.get("x-rate-limit-limit")).toBe("2");
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(res.headers.get("retry-after"))).toBeLessThanOrEqual(3600);
  });

  it("limits all API routes together to rateLimits.max, and never the health routes", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${gw.base}/api/users/usr_1`)).status);
    // One counter per client for all of /api: the 4 logins above took 4 of the 6.
    expect(statuses).toEqual([200, 200, 429, 429]);
    for (let i = 0; i < 5; i++) expect((await fetch(`${gw.base}/health/live`)).status).toBe(200);
  });

  it("is ready when its readyServices are", async () => {
    expect((await fetch(`${gw.base}/health/ready`)).status).toBe(200);
  });

  it("builds the limits on the service's own copy of the routes, not on the module's", () => {
    expect(ApiService.settings?.routes.some(r => r.rateLimit)).toBe(false);
  });
});

describe("api service settings: no limit", () => {
  let gw: { broker: ServiceBroker; base: string };
  beforeAll(async () => {
    gw = await startGateway({
      readyServices: ["users", "tokens"],
      rateLimits: { max: 0, loginMax: 0, windowMs: 60_000 },
    });
  });
  afterAll(() => gw.broker.stop());

  it("turns a limit off with 0: no 429 and no rate-limit headers", async () => {
    for (let i = 0; i < 20; i++) {
      const res = await login(gw.base);
      expect(res.status).toBe(401);
      expect(res.headers.has("x-rate-limit-limit")).toBe(false);
    }
  });

  it("waits on readyServices for /health/ready", async () => {
    const res = await fetch(`${gw.base}/health/ready`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: "unavailable", missing: ["tokens"] });
  });
});

describe("api service settings: canary", () => {
  let gw: { broker: ServiceBroker; base: string };
  beforeAll(async () => {
    gw = await startGateway({ canary: "catalog:v1=0,v2=100" }, [
      { name: "catalog", actions: { list: () => ({ version: 1 }) } },
      { name: "catalog", version: 2, actions: { list: () => ({ version: 2 }) } },
    ]);
  });
  afterAll(() => gw.broker.stop());

  it("splits by the canary setting, and x-version pins a version", async () => {
    expect(await (await fetch(`${gw.base}/api/tokens`)).json()).toEqual({ version: 2 });
    const pinned = await fetch(`${gw.base}/api/tokens`, { headers: { "x-version": "v1" } });
    expect(await pinned.json()).toEqual({ version: 1 });
  });
});
