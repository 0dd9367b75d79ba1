import { describe, expect, it } from "vitest";
import type { Service } from "moleculer";
import { signSession } from "../../lib/gateway/ops/access";
import { newSagaDoc, withStep, type SagaDoc } from "../../lib/sagas/saga-log";
import type { Store } from "../../lib/store/store";
import type { ApiClient } from "../helpers/http";
import { startPlatform, usePlatform } from "../helpers/platform";

/**
 * Who may see the operator page (/ops) and its data: the admins of ADMIN_EMAILS, by bearer
 * token or by the session cookie of the page's login form; nobody else, and nothing at all
 * while ADMIN_EMAILS is unset. (The page itself, in a browser: test/cluster/ops-page.test.ts.)
 */

const PASSWORD = "correct horse battery";
const ADMIN = "ops-admin@example.com";
const BOB = "ops-bob@example.com";
/** vitest.config.mts's JWT_SECRET: what the gateway signs sessions with. */
const SECRET = "test-secret";

async function register(client: ApiClient, email: string) {
  const res = await client.post<{ user: { id: string }; token: string }>("/api/auth/register", {
    email,
    password: PASSWORD,
    displayName: email.split("@")[0],
  });
  expect(res.status).toBe(201);
  return { id: res.body.user.id, token: res.body.token };
}

async function login(client: ApiClient, email: string, password = PASSWORD) {
  return client.post("/ops/login", { email, password }, { headers: { origin: client.baseUrl } });
}

/** The `name=value` of a Set-Cookie, to send back as a Cookie header. */
const cookieOf = (setCookie: string | null) => (setCookie ?? "").split(";")[0];

/** Reads an SSE response until its first `data:` event, then drops the connection. */
async function firstEvent(url: string, headers: Record<string, string>) {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  let text = "";
  if (res.ok && res.body) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    while (!/^data: .*\n\n/m.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  }
  abort.abort();
  const data = /^data: (.*)$/m.exec(text)?.[1];
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    data: data ? (JSON.parse(data) as Record<string, unknown>) : undefined,
  };
}

describe("operator page access with ADMIN_EMAILS set", () => {
  const p = usePlatform(["api", "users", "sagas"], {
    env: { ADMIN_EMAILS: `someone@example.com, ${ADMIN.toUpperCase()}`, OPS_MAX_STREAMS: "2" },
  });
  let admin: { id: string; token: string };
  let bob: { id: string; token: string };

  it("serves the login shell to anyone, but no data without credentials (401)", async () => {
    admin = await register(p.client, ADMIN);
    bob = await register(p.client, BOB);
    const page = await p.client.get("/ops");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(page.text).toContain('id="login-form"');
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect((await p.client.get("/ops/ops.js")).status).toBe(200);

    const snap = await p.client.get("/ops/api/snapshot");
    expect(snap.status).toBe(401);
    expect(snap.body).toMatchObject({ error: { type: "UNAUTHORIZED" } });
    expect((await p.client.get("/ops/api/stream")).status).toBe(401);
    expect((await p.client.get("/ops/api/snapshot", { token: "not.a.jwt" })).status).toBe(401);
  });

  it("answers an admin's bearer token with the cluster's state", async () => {
    // A launch that failed at its second step and was undone, as the saga log keeps it.
    const sagas = p.broker.getLocalService("sagas") as Service & {
      store(name: string): Store<SagaDoc>;
    };
    const def = { type: "launch", steps: [{ name: "createToken" }, { name: "seedPool" }] };
    const doc = newSagaDoc(
      def,
      { userId: admin.id, key: "k1", fingerprint: "f", input: {} },
      {
        owner: "test",
        leaseMs: 1000,
      },
    );
    const error = {
      type: "SERVICE_UNAVAILABLE",
      message: "The step's service did not answer in time",
    };
    let steps = withStep(doc.steps, 0, { state: "compensated", attempts: 1, compensations: 1 });
    steps = withStep(steps, 1, { state: "failed", attempts: 8, error });
    await sagas.store("sagas").insert({ ...doc, state: "compensated", steps, active: undefined });

    const res = await p.client.get<{
      nodes: Array<{ id: string; available: boolean; services: string[]; health: string }>;
      sagas: { available: boolean; rows: Array<Record<string, unknown>> };
      rates: unknown[];
    }>("/ops/api/snapshot", { token: admin.token });
    expect(res.status).toBe(200);
    expect(res.body.nodes).toHaveLength(1);
    expect(res.body.nodes[0]).toMatchObject({ id: p.broker.nodeID, available: true, health: "ok" });
    expect(res.body.nodes[0].services).toEqual(["api", "sagas", "users"]);
    expect(res.body.sagas.available).toBe(true);
    expect(res.body.sagas.rows).toEqual([
      expect.objectContaining({
        id: doc._id,
        type: "launch",
        state: "compensated",
        failedSteps: [{ name: "seedPool", state: "failed", error }],
      }),
    ]);
    // The operator's view only: what the saga was given stays out.
    expect(res.body.sagas.rows[0]).not.toHaveProperty("input");
  });

  it("refuses the page and its data to a non-admin's bearer token (403)", async () => {
    for (const path of ["/ops", "/ops/api/snapshot", "/ops/api/stream"]) {
      const res = await p.client.get(path, { token: bob.token });
      expect(res.status, path).toBe(403);
      expect(res.body, path).toMatchObject({ error: { type: "FORBIDDEN" } });
    }
  });

  it("logs an admin in with an HttpOnly, SameSite=Strict cookie for /ops only", async () => {
    const res = await login(p.client, ADMIN);
    expect(res.status).toBe(200);
    const set = res.headers.get("set-cookie") ?? "";
    expect(set).toMatch(/^mintmesh_ops=[\w.-]+;/);
    expect(set).toContain("HttpOnly");
    expect(set).toContain("SameSite=Strict");
    expect(set).toContain("Path=/ops");
    expect(set).not.toContain("Secure"); // plain HTTP, no trusted proxy
    // The session is no API token.
    const session = cookieOf(set).split("=")[1];
    expect((await p.client.get("/api/users/me", { token: session })).status).toBe(401);

    const snap = await p.client.get("/ops/api/snapshot", { headers: { cookie: cookieOf(set) } });
    expect(snap.status).toBe(200);
    expect(snap.body).toHaveProperty("nodes");
  });

  it("gives no session to a non-admin or a wrong password", async () => {
    const notAdmin = await login(p.client, BOB);
    expect(notAdmin.status).toBe(403);
    expect(notAdmin.headers.get("set-cookie")).toBeNull();
    const wrong = await login(p.client, ADMIN, "not the password");
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
  });

  it("refuses a non-admin's session (403) and an API token as a session (401)", async () => {
    // As if BOB had been an admin when he logged in: each request checks ADMIN_EMAILS again.
    const bobSession = signSession({ userId: bob.id, email: BOB }, SECRET, 60_000);
    const res = await p.client.get("/ops/api/snapshot", {
      headers: { cookie: `mintmesh_ops=${bobSession}` },
    });
    expect(res.status).toBe(403);
    const page = await p.client.get("/ops", { headers: { cookie: `mintmesh_ops=${bobSession}` } });
    expect(page.status).toBe(403);
    expect(page.headers.get("set-cookie")).toContain("Max-Age=0");
    // Signed with the session key of another secret, or an access token: no session.
    const forged = signSession({ userId: admin.id, email: ADMIN }, "other-secret", 60_000);
    for (const value of [forged, admin.token]) {
      const r = await p.client.get("/ops/api/snapshot", {
        headers: { cookie: `mintmesh_ops=${value}` },
      });
      expect(r.status).toBe(401);
    }
  });

  it("takes login and logout as same-origin JSON only", async () => {
    const form = await p.client.request("POST", "/ops/login", {
      rawBody: `email=${encodeURIComponent(ADMIN)}&password=x`,
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(form.status).toBe(415);
    const crossSite = await p.client.post(
      "/ops/login",
      { email: ADMIN, password: PASSWORD },
      { headers: { origin: "https://evil.example" } },
    );
    expect(crossSite.status).toBe(403);
    expect(crossSite.headers.get("set-cookie")).toBeNull();
    const crossLogout = await p.client.post("/ops/logout", {}, { headers: { origin: "null" } });
    expect(crossLogout.status).toBe(403);

    const out = await p.client.post("/ops/logout", {}, { headers: { origin: p.client.baseUrl } });
    expect(out.status).toBe(204);
    expect(out.headers.get("set-cookie")).toMatch(/^mintmesh_ops=;.*Max-Age=0/);
  });

  it("streams snapshots to an admin, at most OPS_MAX_STREAMS at once", async () => {
    const auth = { authorization: `Bearer ${admin.token}` };
    const url = `${p.baseUrl}/ops/api/stream`;
    const ev = await firstEvent(url, auth);
    expect(ev.status).toBe(200);
    expect(ev.type).toMatch(/^text\/event-stream/);
    expect(ev.data).toMatchObject({ nodes: [{ id: p.broker.nodeID, available: true }] });

    // Two held open (the limit is 2 here): the third is refused.
    const held = [new AbortController(), new AbortController()];
    const open = await Promise.all(held.map(a => fetch(url, { headers: auth, signal: a.signal })));
    expect(open.map(r => r.status)).toEqual([200, 200]);
    const third = await p.client.get("/ops/api/stream", { token: admin.token });
    expect(third.status).toBe(503);
    for (const a of held) a.abort();
    // Closed streams free their places.
    await expect
      .poll(async () => (await firstEvent(url, auth)).status, { timeout: 5000 })
      .toBe(200);
  });
});

describe("operator streams at a stop", () => {
  it("ends them: a gateway with one open stops at once, not when the client leaves", async () => {
    const p = await startPlatform(["api", "users"], { env: { ADMIN_EMAILS: ADMIN } });
    const admin = await register(p.client, ADMIN);
    const held = new AbortController();
    const res = await fetch(`${p.baseUrl}/ops/api/stream`, {
      headers: { authorization: `Bearer ${admin.token}` },
      signal: held.signal,
    });
    expect(res.status).toBe(200);
    const reading = (async () => {
      const reader = res.body!.getReader();
      while (!(await reader.read()).done);
      return "ended";
    })().catch(() => "aborted");
    try {
      // The stream is still open when the stop begins; the stop ends it (the client sees
      // its end) instead of waiting for the client, which never leaves here.
      const stopped = p.stop().then(() => "stopped");
      const first = await Promise.race([
        stopped,
        new Promise(resolve => setTimeout(() => resolve("still stopping"), 10_000)),
      ]);
      expect(first).toBe("stopped");
      expect(await reading).toBe("ended");
    } finally {
      held.abort();
    }
  });
});

describe("operator page without ADMIN_EMAILS", () => {
  const p = usePlatform(["api", "users"]);

  it("answers 404 everywhere under /ops, as for a path that does not exist", async () => {
    const user = await register(p.client, "ops-nobody@example.com");
    const absent = await p.client.get("/no-such-page");
    expect(absent.status).toBe(404);
    for (const [method, path] of [
      ["GET", "/ops"],
      ["GET", "/ops/ops.js"],
      ["GET", "/ops/api/snapshot"],
      ["GET", "/ops/api/stream"],
      ["POST", "/ops/login"],
    ]) {
      const res = await p.client.request(method, path, {
        token: user.token,
        body:
          method === "POST" ? { email: "ops-nobody@example.com", password: PASSWORD } : undefined,
      });
      expect(res.status, path).toBe(404);
      expect(res.body, path).toEqual({
        error: { ...(absent.body as { error: object }).error, requestId: expect.any(String) },
      });
    }
  });
});
