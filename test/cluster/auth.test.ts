import { beforeAll, describe, expect, it } from "vitest";
import type { ApiClient } from "../helpers/http";
import { clusterDown, useCluster, type NodeProcess } from "../helpers/cluster";

describe.skipIf(clusterDown())("gateway and users as two processes over NATS", () => {
  const cluster = useCluster("auth");
  const { namespace } = cluster;
  let gateway: NodeProcess | undefined;
  let users: NodeProcess | undefined;
  let client: ApiClient;

  beforeAll(async () => {
    [users, { node: gateway, client }] = await Promise.all([
      cluster.node({ name: "users", services: ["users"] }),
      // Ready once the gateway has discovered the users node over NATS.
      cluster.gateway({ env: { READY_SERVICES: "users" } }),
    ]);
  });

  it("registers, logs in and reads the profile through HTTP", async () => {
    const email = `cluster-${namespace}@example.com`;
    const requestId = `req-${namespace}`;
    const reg = await client.post<{ user: { id: string; email: string } }>(
      "/api/auth/register",
      { email, password: "correct horse battery", displayName: "Cluster" },
      { headers: { "x-request-id": requestId } },
    );
    expect(reg.status).toBe(201);
    expect(reg.headers.get("x-request-id")).toBe(requestId);
    expect(reg.body.user.email).toBe(email);

    // The users process did the work, and its log line carries the gateway's request id.
    const line = await users!.waitFor(/User registered/, 5000);
    expect(JSON.parse(line)).toMatchObject({
      msg: "User registered",
      requestID: requestId,
      userId: reg.body.user.id,
    });
    expect(users!.proc.pid).not.toBe(gateway!.proc.pid);

    const login = await client.post<{ token: string; user: { id: string } }>("/api/auth/login", {
      email,
      password: "correct horse battery",
    });
    expect(login.status).toBe(200);
    expect(login.body.user.id).toBe(reg.body.user.id);

    const me = await client.get<{ id: string; email: string }>("/api/users/me", {
      token: login.body.token,
    });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: reg.body.user.id, email });
  });
});
