import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ApiClient } from "../helpers/http";
import { withSettings } from "../helpers/platform";
import { brokerWithLogs } from "../helpers/logs";

/**
 * The gateway's access log, as pino writes it: the platform (api, users) with the project's
 * broker config, its logger at info and writing to a stream the test reads. Each request gets
 * exactly one line with its method, route pattern, path, status, duration, request id and user,
 * whether an action answered it, an error did or nothing matched; no line of the whole process
 * holds the password or the bearer token.
 */

type Line = Record<string, unknown> & { msg?: string; requestID?: string };

describe("the gateway's access log", () => {
  const lines: Line[] = [];
  let broker: ServiceBroker;
  let client: ApiClient;
  let raw = "";

  beforeAll(async () => {
    broker = await brokerWithLogs({
      nodeID: `access-${process.pid}`,
      level: "info",
      write: chunk => {
        raw += chunk;
        for (const l of chunk.split("\n").filter(Boolean)) lines.push(JSON.parse(l) as Line);
      },
    });
    for (const [name, settings] of [
      [
        "api",
        { port: 0, ip: "127.0.0.1", readyServices: ["users"], rateLimits: { max: 0, loginMax: 0 } },
      ],
      ["users", {}],
    ] as const) {
      const mod = (await import(`../../services/${name}.service.ts`)) as { default: ServiceSchema };
      broker.createService(withSettings(mod.default, settings));
    }
    await broker.start();
    const api = broker.getLocalService("api") as unknown as { server: { address(): AddressInfo } };
    client = new ApiClient(`http://127.0.0.1:${api.server.address().port}`);
  });
  afterAll(() => broker?.stop());

  const accessLines = (requestID: string) =>
    lines.filter(l => l.msg === "HTTP request" && l.requestID === requestID);
  /** The one access line of the request sent with this id (written once the answer is out). */
  const lineOf = async (requestID: string): Promise<Line> => {
    await vi.waitFor(() => expect(accessLines(requestID)).toHaveLength(1));
    return accessLines(requestID)[0];
  };
  const newId = () => `acc-${randomBytes(6).toString("hex")}`;

  it("logs one line per request: action, error, 404, user, never a secret", async () => {
    const password = `pw-${randomBytes(10).toString("hex")}`;
    const email = `acc-${randomBytes(4).toString("hex")}@example.com`;

    const regId = newId();
    const reg = await client.post<{ token: string; user: { id: string } }>(
      "/api/auth/register",
      { email, password, displayName: "Acc" },
      { headers: { "x-request-id": regId } },
    );
    expect(reg.status).toBe(201);
    const jwt = reg.body.token;
    const reg1 = await lineOf(regId);
    expect(reg1).toMatchObject({
      level: 30,
      method: "POST",
      route: "/api/auth/register",
      path: "/api/auth/register",
      status: 201,
    });
    expect(reg1.durationMs).toEqual(expect.any(Number));
    expect(reg1.userId).toBeUndefined();
    // The service's own line of the same request carries the same id.
    expect(lines.some(l => l.requestID === regId && l.svc === "users")).toBe(true);

    // A user named by the bearer token.
    const meId = newId();
    const me = await client.get("/api/users/me", { token: jwt, headers: { "x-request-id": meId } });
    expect(me.status).toBe(200);
    expect(await lineOf(meId)).toMatchObject({
      route: "/api/users/me",
      status: 200,
      userId: reg.body.user.id,
    });

    // An error answered by onError: the route's pattern, not the id in the path.
    const missingId = newId();
    const missing = await client.get("/api/users/usr_doesnotexist", {
      headers: { "x-request-id": missingId },
    });
    expect(missing.status).toBe(404);
    expect(await lineOf(missingId)).toMatchObject({
      method: "GET",
      route: "/api/users/:id",
      path: "/api/users/usr_doesnotexist",
      status: 404,
    });

    // A wrong password: 401, and the password is nowhere.
    const loginId = newId();
    const wrong = `wrong-${randomBytes(8).toString("hex")}`;
    const login = await client.post(
      "/api/auth/login",
      { email, password: wrong },
      { headers: { "x-request-id": loginId } },
    );
    expect(login.status).toBe(401);
    expect(await lineOf(loginId)).toMatchObject({ route: "/api/auth/login", status: 401 });

    // No route at all: a 404 with no pattern, the path without its query string.
    const nowhereId = newId();
    const nowhere = await client.get("/nowhere?access_token=abc123secret", {
      token: jwt,
      headers: { "x-request-id": nowhereId },
    });
    expect(nowhere.status).toBe(404);
    expect(await lineOf(nowhereId)).toMatchObject({ route: null, path: "/nowhere", status: 404 });

    // A request without an id of its own gets the one the gateway answered with.
    const anon = await client.get("/health/live");
    expect(await lineOf(anon.headers.get("x-request-id")!)).toMatchObject({
      route: "/health/live",
      status: 200,
    });

    for (const [what, secret] of [
      ["password", password],
      ["wrong password", wrong],
      ["JWT", jwt],
      ["JWT signature", jwt.split(".")[2]],
      ["query string", "abc123secret"],
      ["Authorization header", "Bearer"],
    ]) {
      expect(raw.includes(secret), what).toBe(false);
    }
  });
});
