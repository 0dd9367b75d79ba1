import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ErrorBody } from "../helpers/http";
import { waitUntil } from "../helpers/cluster";
import { startPlatform, usePlatform, useUsers, type Platform } from "../helpers/platform";
import { activityRow, publishRows, startWebhookReceiver, type Receiver } from "../helpers/webhooks";

/**
 * Webhooks end to end in one process: endpoints over the REST API, activity rows
 * published on `activity.recorded` as the activity service's outbox does, and
 * receivers on loopback (WEBHOOKS_ALLOW_PRIVATE=true) that fail, throttle, redirect,
 * hang or refuse, each checked the way a receiver would check it.
 */

interface Hook {
  id: string;
  url: string;
  events: string[];
  enabled: boolean;
  disabledReason: string | null;
  secret?: string;
}
interface DeliveryRow {
  id: string;
  eventId: string;
  type: string;
  state: string;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
}
interface Deliveries {
  rows: DeliveryRow[];
  next: string | null;
}

const ENV = {
  READY_SERVICES: "users,webhooks",
  WEBHOOKS_ALLOW_PRIVATE: "true",
  WEBHOOKS_RETRY_DELAYS_MS: "100,200,300,400",
  WEBHOOKS_POLL_MS: "50",
  WEBHOOKS_TIMEOUT_MS: "4000",
  WEBHOOKS_PER_ENDPOINT: "2",
  // Few slots in all: without the per-endpoint bound the hanging endpoint would take them all.
  WEBHOOKS_CONCURRENCY: "6",
  WEBHOOKS_DISABLE_AFTER_MS: "500",
  ADMIN_EMAILS: "webhooks-ops@example.com",
};

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>(r => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>(r => srv.close(() => r()));
  return port;
}

async function createHook(p: Platform, token: string, url: string, events = ["*"]): Promise<Hook> {
  const res = await p.client.post<Hook>("/api/webhooks", { url, events }, { token });
  expect(res.status).toBe(201);
  return res.body;
}

const deliveries = async (p: Platform, token: string, hookId: string, q = "") =>
  (await p.client.get<Deliveries>(`/api/webhooks/${hookId}/deliveries${q}`, { token })).body;

describe("webhooks", () => {
  const p = usePlatform(["api", "users", "webhooks"], ENV);
  const [ann, bob, cat, dan, eve] = useUsers(p, ["ann", "bob", "cat", "dan", "eve"]);
  const receivers: Receiver[] = [];
  const receiver = async (...args: Parameters<typeof startWebhookReceiver>) => {
    const r = await startWebhookReceiver(...args);
    receivers.push(r);
    return r;
  };
  afterAll(() => Promise.all(receivers.map(r => r.close())));

  it("creates, lists, shows and deletes a webhook; the secret only in the 201; others see 404", async () => {
    const r = await receiver();
    const res = await p.client.post<Hook>(
      "/api/webhooks",
      { url: r.url, events: ["transfer.in", "nft.minted"], description: "mine" },
      { token: ann.token },
    );
    expect(res.status).toBe(201);
    expect(res.headers.get("location")).toBe(`/api/webhooks/${res.body.id}`);
    expect(res.body).toMatchObject({
      url: r.url,
      events: ["transfer.in", "nft.minted"],
      enabled: true,
    });
    expect(res.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const id = res.body.id;

    const list = await p.client.get<{ rows: Hook[]; total: number }>("/api/webhooks", {
      token: ann.token,
    });
    expect(list.body.total).toBe(1);
    expect(list.body.rows[0].id).toBe(id);
    const one = await p.client.get<Hook>(`/api/webhooks/${id}`, { token: ann.token });
    expect(one.status).toBe(200);
    for (const answer of [list.text, one.text]) {
      expect(answer).not.toContain("secret");
      expect(answer).not.toContain(res.body.secret!);
    }

    for (const [method, path] of [
      ["GET", `/api/webhooks/${id}`],
      ["DELETE", `/api/webhooks/${id}`],
      ["POST", `/api/webhooks/${id}/test`],
      ["GET", `/api/webhooks/${id}/deliveries`],
      ["POST", `/api/webhooks/${id}/deliveries/whd_x/redeliver`],
    ])
      expect((await p.client.request(method, path, { token: bob.token })).status).toBe(404);
    expect((await p.client.get("/api/webhooks", { token: bob.token })).body).toEqual({
      rows: [],
      total: 0,
    });
    expect((await p.client.get("/api/webhooks")).status).toBe(401);

    const bad = await p.client.post<ErrorBody>(
      "/api/webhooks",
      { url: r.url, events: ["nope"] },
      { token: ann.token },
    );
    expect(bad.status).toBe(400);
    const badUrl = await p.client.post<ErrorBody>(
      "/api/webhooks",
      { url: "ftp://x/", events: ["*"] },
      { token: ann.token },
    );
    expect(badUrl.status).toBe(400);
    expect(badUrl.body.error.data?.[0].field).toBe("url");

    expect((await p.client.delete(`/api/webhooks/${id}`, { token: ann.token })).status).toBe(200);
    expect((await p.client.get(`/api/webhooks/${id}`, { token: ann.token })).status).toBe(404);
  });

  it("retries a failing receiver until it takes the event: one webhook-id, every signature valid, queued once", async () => {
    // 500 to the first two attempts of each event, then 200.
    const r = await receiver((_hit, n, res) => res.writeHead(n <= 2 ? 500 : 200).end());
    const hook = await createHook(p, cat.token, r.url, ["transfer.in"]);
    const row = activityRow(cat.id, "transfer.in");
    const others = [activityRow(bob.id, "transfer.in"), activityRow(cat.id, "transfer.out")];
    await publishRows(p.broker, [row, ...others]);
    await waitUntil(() => r.attemptsOf(row.id) === 3, 10_000, 20);

    expect(r.hits.map(h => h.id)).toEqual([row.id, row.id, row.id]); // not bob's, not transfer.out
    expect(r.allSigned(hook.secret!)).toBe(true);
    expect(new Set(r.hits.map(h => h.body))).toEqual(new Set([JSON.stringify(row)]));
    expect(JSON.parse(r.hits[0].body)).toEqual(row);
    await waitUntil(
      async () => (await deliveries(p, cat.token, hook.id)).rows[0]?.state === "delivered",
      5000,
      20,
    );
    expect((await deliveries(p, cat.token, hook.id)).rows).toMatchObject([
      { eventId: row.id, type: "transfer.in", state: "delivered", attempts: 3, lastStatus: 200 },
    ]);

    // The same event again (an outbox re-sending after a crash) queues nothing new.
    await publishRows(p.broker, [row]);
    const sentinel = activityRow(cat.id, "transfer.in");
    await publishRows(p.broker, [sentinel]);
    await waitUntil(() => r.attemptsOf(sentinel.id) === 3, 10_000, 20);
    expect(r.attemptsOf(row.id)).toBe(3);
    expect((await deliveries(p, cat.token, hook.id)).rows.map(d => d.eventId)).toEqual([
      sentinel.id,
      row.id,
    ]);
  });

  it("waits as long as a 429's Retry-After asks", async () => {
    const r = await receiver((_hit, n, res) =>
      n === 1 ? res.writeHead(429, { "Retry-After": "1" }).end() : res.writeHead(200).end(),
    );
    await createHook(p, dan.token, r.url);
    const row = activityRow(dan.id);
    await publishRows(p.broker, [row]);
    await waitUntil(() => r.attemptsOf(row.id) === 2, 10_000, 20);
    // The schedule alone would have come back after about 100 ms.
    expect(r.hits[1].at - r.hits[0].at).toBeGreaterThanOrEqual(950);
  });

  it("never follows a redirect, and disables an endpoint that keeps failing, telling its owner why", async () => {
    const target = await receiver();
    const r = await receiver((_hit, _n, res) => res.writeHead(302, { Location: target.url }).end());
    const hook = await createHook(p, eve.token, r.url);
    const row = activityRow(eve.id);
    await publishRows(p.broker, [row]);
    // Every attempt (5) fails with the 302, the delivery ends failed, the endpoint is disabled.
    await waitUntil(
      async () =>
        (await p.client.get<Hook>(`/api/webhooks/${hook.id}`, { token: eve.token })).body
          .enabled === false,
      10_000,
      50,
    );
    expect(r.attemptsOf(row.id)).toBe(5);
    expect(target.hits).toHaveLength(0);
    const shown = (await p.client.get<Hook>(`/api/webhooks/${hook.id}`, { token: eve.token })).body;
    expect(shown.disabledReason).toContain("HTTP 302");
    expect((await deliveries(p, eve.token, hook.id)).rows).toMatchObject([
      { eventId: row.id, state: "failed", attempts: 5, lastStatus: 302, lastError: "HTTP 302" },
    ]);
    // A disabled endpoint gets nothing new.
    await publishRows(p.broker, [activityRow(eve.id)]);
    const probe = await receiver();
    await createHook(p, eve.token, probe.url);
    const after = activityRow(eve.id);
    await publishRows(p.broker, [after]);
    await waitUntil(() => probe.attemptsOf(after.id) === 1, 5000, 20);
    expect((await deliveries(p, eve.token, hook.id)).rows).toHaveLength(1);
  });

  it("a dead and a hanging endpoint do not hold back a healthy one", async () => {
    const [owner] = [bob];
    const hanging = await receiver(() => undefined); // takes the request, never answers
    const healthy = await receiver();
    await createHook(p, owner.token, `http://127.0.0.1:${await closedPort()}/hook`);
    await createHook(p, owner.token, hanging.url);
    const good = await createHook(p, owner.token, healthy.url);
    const rows = Array.from({ length: 12 }, () => activityRow(owner.id));
    await publishRows(p.broker, rows);
    await waitUntil(() => rows.every(row => healthy.attemptsOf(row.id) === 1), 3000, 20);
    // The hanging endpoint holds its own two slots and no more; none of them has even timed out yet (4 s).
    expect(hanging.hits.length).toBeLessThanOrEqual(2);
    expect(healthy.allSigned(good.secret!)).toBe(true);
  });

  it("sends a test event, lists deliveries page by page, and redelivers one with the same webhook-id", async () => {
    const r = await receiver();
    const hook = await createHook(p, ann.token, r.url, ["nft.minted"]);
    const test = await p.client.post<DeliveryRow>(`/api/webhooks/${hook.id}/test`, undefined, {
      token: ann.token,
    });
    expect(test.status).toBe(202);
    expect(test.body).toMatchObject({ type: "webhook.test", state: "pending" });
    await waitUntil(() => r.hits.length === 1, 5000, 20);
    expect(JSON.parse(r.hits[0].body)).toMatchObject({
      id: test.body.eventId,
      type: "webhook.test",
      actorId: ann.id,
    });
    expect(r.allSigned(hook.secret!)).toBe(true);

    const rows = [activityRow(ann.id, "nft.minted"), activityRow(ann.id, "nft.minted")];
    await publishRows(p.broker, rows);
    await waitUntil(() => r.hits.length === 3, 5000, 20);
    const first = await deliveries(p, ann.token, hook.id, "?limit=2");
    expect(first.rows).toHaveLength(2);
    expect(first.next).not.toBeNull();
    const second = await deliveries(p, ann.token, hook.id, `?limit=2&cursor=${first.next}`);
    expect(second.rows.map(d => d.eventId)).toEqual([test.body.eventId]);
    expect(second.next).toBeNull();
    expect(first.rows.map(d => d.eventId)).toEqual([rows[1].id, rows[0].id]);

    const target = first.rows[1];
    const redo = await p.client.post<DeliveryRow>(
      `/api/webhooks/${hook.id}/deliveries/${target.id}/redeliver`,
      undefined,
      { token: ann.token },
    );
    expect(redo.status).toBe(202);
    await waitUntil(() => r.attemptsOf(rows[0].id) === 2, 5000, 20);
    expect(r.allSigned(hook.secret!)).toBe(true);
    const missing = await p.client.post(
      `/api/webhooks/${hook.id}/deliveries/whd_nope/redeliver`,
      undefined,
      {
        token: ann.token,
      },
    );
    expect(missing.status).toBe(404);
  });

  it("shows the delivery backlog and failures on the operator page", async () => {
    const reg = await p.client.post<{ token: string }>("/api/auth/register", {
      email: "webhooks-ops@example.com",
      password: "correct horse battery",
      displayName: "ops",
    });
    expect(reg.status).toBe(201);
    const snap = await p.client.get<{
      webhooks: {
        pending: number;
        oldestPendingMs: number;
        failed: number;
        disabledEndpoints: number;
        disabled: Array<{ reason: string }>;
      };
    }>("/ops/api/snapshot", { token: reg.body.token });
    expect(snap.status).toBe(200);
    const w = snap.body.webhooks;
    expect(w.failed).toBeGreaterThanOrEqual(1); // the redirecting endpoint's
    expect(w.disabledEndpoints).toBeGreaterThanOrEqual(1);
    expect(w.disabled.some(d => d.reason.includes("HTTP 302"))).toBe(true);
    expect(w.pending).toBeGreaterThanOrEqual(1); // the hanging endpoint's
    expect(w.oldestPendingMs).toBeGreaterThan(0);
    expect(snap.text).not.toContain("whsec_");
  });
});

describe("webhooks with NODE_ENV=production: public https addresses only", () => {
  const p = usePlatform(["api", "users", "webhooks"], {
    READY_SERVICES: "users,webhooks",
    NODE_ENV: "production",
    JWT_SECRET: "a-long-random-production-secret-0123456789abcdef",
    SIWE_DOMAIN: "mintmesh.test",
    SIWE_URI: "https://mintmesh.test",
  });
  const [ann] = useUsers(p, ["ann"]);
  let r: Receiver;
  beforeAll(async () => {
    r = await startWebhookReceiver();
  });
  afterAll(() => r?.close());

  it.each([
    ["plain http", () => r.url.replace("127.0.0.1", "93.184.215.14")],
    ["loopback", () => r.url.replace("http:", "https:")],
    ["a private address", () => "https://10.0.0.7/hook"],
    ["the metadata address", () => "https://169.254.169.254/latest"],
    ["IPv4-mapped loopback", () => "https://[::ffff:127.0.0.1]/hook"],
    ["a name that resolves to loopback", () => "https://localhost/hook"],
  ])("refuses %s with a 400 naming url", async (_what, url) => {
    const res = await p.client.post<ErrorBody>(
      "/api/webhooks",
      { url: url(), events: ["*"] },
      { token: ann.token },
    );
    expect(res.status).toBe(400);
    expect(res.body.error.data?.[0].field).toBe("url");
  });

  it("refuses to start with WEBHOOKS_ALLOW_PRIVATE=true", async () => {
    await expect(
      startPlatform(["webhooks"], { NODE_ENV: "production", WEBHOOKS_ALLOW_PRIVATE: "true" }),
    ).rejects.toThrow("WEBHOOKS_ALLOW_PRIVATE=true is refused with NODE_ENV=production");
  });

  it("takes an https URL to a public address", async () => {
    const res = await p.client.post<Hook>(
      "/api/webhooks",
      { url: "https://93.184.215.14/hook", events: ["*"] },
      { token: ann.token },
    );
    expect(res.status).toBe(201);
  });
});
