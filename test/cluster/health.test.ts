import { beforeAll, describe, expect, it } from "vitest";
import {
  REDIS_URL,
  clusterDown,
  freePort,
  useCluster,
  waitUntil,
  type Gateway,
  type NodeProcess,
} from "../helpers/cluster";

/**
 * Readiness names what is missing, on every node's HEALTH_PORT and at the gateway: a
 * node whose Redis does not answer is live but not ready ("redis"); a service whose only
 * node stopped is named by the gateway.
 */

interface Readiness {
  status: string;
  nodeID?: string;
  reason?: string;
  missing?: string[];
}

const get = async (port: number, path: string) => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: (await res.json()) as Readiness };
};

describe.skipIf(clusterDown())("readiness names what is missing", () => {
  const cluster = useCluster("health", { env: { REDIS_URL } });
  let users: NodeProcess;
  let tokens: NodeProcess;
  let gateway: Gateway;
  let usersHealth: number;
  let tokensHealth: number;
  let noRedis: number;

  beforeAll(async () => {
    [usersHealth, tokensHealth, noRedis] = await Promise.all([freePort(), freePort(), freePort()]);
    [users, tokens, gateway] = await Promise.all([
      cluster.node({
        name: "users",
        services: ["users"],
        env: { HEALTH_PORT: String(usersHealth) },
      }),
      cluster.node({
        name: "tokens",
        services: ["tokens"],
        // Nothing listens there: the cacher keeps trying to connect.
        env: { HEALTH_PORT: String(tokensHealth), REDIS_URL: `redis://127.0.0.1:${noRedis}` },
      }),
      cluster.gateway({ env: { READY_SERVICES: "users,tokens" } }),
    ]);
  });

  it("a node whose Redis does not answer is live, and not ready naming redis", async () => {
    expect((await get(tokensHealth, "/health/live")).status).toBe(200);
    expect(await get(tokensHealth, "/health/ready")).toEqual({
      status: 503,
      body: {
        status: "unavailable",
        nodeID: cluster.nodeId("tokens"),
        reason: "redis unreachable",
        missing: ["redis"],
      },
    });
    // Its neighbour on the real Redis is ready.
    await waitUntil(async () => (await get(usersHealth, "/health/ready")).status === 200);
    expect((await get(usersHealth, "/health/ready")).body).toEqual({
      status: "ok",
      nodeID: cluster.nodeId("users"),
    });
    expect(tokens.lines.some(l => /ECONNREFUSED/.test(l))).toBe(true);
  });

  it("the gateway names a service whose node stopped, and is ready again when it is back", async () => {
    expect((await gateway.client.get("/health/ready")).status).toBe(200);
    await users.kill("SIGTERM");
    await waitUntil(async () => (await gateway.client.get("/health/ready")).status === 503);
    expect((await gateway.client.get("/health/ready")).body).toEqual({
      status: "unavailable",
      missing: ["users"],
    });
    users = await cluster.node({ name: "users-2", services: ["users"] });
    await gateway.ready();
  });
});
