import { afterEach, describe, expect, it } from "vitest";
import type { ActivityRow } from "../../lib/events/activity";
import type { LiveStreams } from "../../lib/gateway/live-stream";
import { startPlatform, usePlatform, useUsers } from "../helpers/platform";
import { registerUser, type Registered } from "../helpers/http";
import { createToken } from "../helpers/tokens";
import { openSse, type SseStream } from "../helpers/sse";

/**
 * GET /api/me/events over plain HTTP, the whole platform in this process with the real
 * activity service: rows arrive live in order, a resume (Last-Event-ID or ?after=) gives
 * every later row once, bounds answer 503 with Retry-After, pings keep a quiet stream
 * open past the HTTP server's timeouts, and a browser's stream cookie.
 */

describe("the live stream GET /api/me/events", () => {
  const p = usePlatform(["api", "users", "tokens", "activity"], {
    env: {
      RATE_LIMIT_MAX: "0",
      LIVE_PING_MS: "150",
      LIVE_MAX_STREAMS_PER_USER: "2",
      LIVE_MAX_STREAMS: "3",
    },
    // A quiet stream outlives the server's own timeouts (its pings, and setTimeout(0)).
    settings: { api: { httpServerTimeout: 2500, requestTimeout: 2500, headersTimeout: 2500 } },
  });
  const [ann, bob, cid, dan] = useUsers(p, ["ann", "bob", "cid", "dan"]);
  const open: SseStream[] = [];
  const liveStreams = () =>
    (p.broker.getLocalService("api") as unknown as { liveStreams: LiveStreams }).liveStreams;
  // A failed test must not leave its streams holding the gateway's slots for the next.
  afterEach(async () => {
    open.splice(0).forEach(s => s.close());
    await expect.poll(() => liveStreams().size).toBe(0);
  });

  async function stream(who: Registered | null, query = "", headers: Record<string, string> = {}) {
    const auth: Record<string, string> = who ? { authorization: `Bearer ${who.token}` } : {};
    const s = await openSse(`${p.baseUrl}/api/me/events${query}`, { ...auth, ...headers });
    open.push(s);
    return s;
  }

  /** The user's history once it holds `n` rows (activity records them from the events). */
  async function historyOf(who: Registered, n: number): Promise<ActivityRow[]> {
    await expect.poll(async () => (await history(who)).length, { timeout: 10_000 }).toBe(n);
    return history(who);
  }

  /** Every row of the user's history, oldest first, as activity.list pages it. */
  async function history(who: Registered): Promise<ActivityRow[]> {
    const rows: ActivityRow[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await p.broker.call<{ rows: ActivityRow[]; next: string | null }, object>(
        "activity.list",
        { actorId: who.id, order: "asc", limit: 100, ...(cursor ? { cursor } : {}) },
      );
      rows.push(...page.rows);
      if (!page.next) return rows;
      cursor = page.next;
    }
  }

  async function transfers(from: Registered, to: Registered, tokenId: string, n: number) {
    for (let i = 0; i < n; i++) {
      const res = await p.client.post(
        `/api/tokens/${tokenId}/transfers`,
        { to: to.id, amount: String(i + 1) },
        { token: from.token },
      );
      expect(res.status).toBe(201);
    }
  }

  const rowsOf = (s: SseStream) => s.parser.events.map(e => JSON.parse(e.data) as ActivityRow);

  it("answers 401 without credentials or with a forged token", async () => {
    const none = await fetch(`${p.baseUrl}/api/me/events`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { type: string } }).error.type).toBe("UNAUTHORIZED");
    const forged = await fetch(`${p.baseUrl}/api/me/events`, {
      headers: { authorization: "Bearer abc.def.ghi" },
    });
    expect(forged.status).toBe(401);
  });

  it("sends the caller's rows as they happen, in order, each once, and pings", async () => {
    const s = await stream(ann);
    expect(s.status).toBe(200);
    expect(s.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(s.headers.get("x-request-id")).toBeTruthy();

    const token = await createToken(p.client, ann.token);
    await transfers(ann, bob, token.id, 5);
    const all = await historyOf(ann, 6);
    expect(all.map(r => r.type)).toEqual(["token.created", ...Array(5).fill("transfer.out")]);
    await s.until(x => x.events.length >= all.length);
    // Quiet past the HTTP server's 2.5 s timeouts: still open, pinged.
    await new Promise(r => setTimeout(r, 3000));
    expect(s.parser.events.map(e => e.id)).toEqual(all.map(r => r.cursor));
    expect(s.parser.events.map(e => e.event)).toEqual(all.map(r => r.type));
    expect(rowsOf(s)).toEqual(all);
    expect(s.parser.comments.filter(c => c === "ping").length).toBeGreaterThanOrEqual(10);
    expect(s.parser.retry).toBeGreaterThan(0);

    // Only ann's rows: bob's transfer.in went to bob alone.
    await transfers(bob, ann, token.id, 1);
    const late = await historyOf(ann, 7);
    await s.until(x => x.events.length === late.length);
    expect(rowsOf(s).at(-1)?.type).toBe("transfer.in");
    s.close();
  });

  it("resumes after Last-Event-ID or ?after= with every later row once, then the live ones", async () => {
    const token = await createToken(p.client, cid.token);
    await transfers(cid, dan, token.id, 6);
    const before = await historyOf(cid, 7);
    const from = before[2].cursor;
    const expected = before.slice(3);

    const byHeader = await stream(cid, "", { "last-event-id": from });
    // An empty Last-Event-ID is none: ?after= decides.
    const byQuery = await stream(cid, `?after=${from}`, { "last-event-id": "" });
    for (const s of [byHeader, byQuery]) {
      await s.until(x => x.events.length === expected.length);
      expect(rowsOf(s)).toEqual(expected);
    }
    await transfers(cid, dan, token.id, 2);
    const after = (await historyOf(cid, 9)).slice(3);
    for (const s of [byHeader, byQuery]) {
      await s.until(x => x.events.length === after.length);
      await new Promise(r => setTimeout(r, 200));
      expect(rowsOf(s)).toEqual(after);
      s.close();
    }

    // EventSource reconnects to the same URL with a newer Last-Event-ID: that one wins.
    const both = await stream(cid, `?after=${before[0].cursor}`, {
      "last-event-id": before[5].cursor,
    });
    const last = await historyOf(cid, 9);
    await both.until(x => x.events.length === last.length - 6);
    expect(rowsOf(both)).toEqual(last.slice(6));
    both.close();
  });

  it("answers 400 naming `after` for a cursor that is none", async () => {
    for (const bad of ["not%20a%20cursor", "x".repeat(100), "zzzz!"]) {
      const res = await fetch(`${p.baseUrl}/api/me/events?after=${bad}`, {
        headers: { authorization: `Bearer ${dan.token}` },
      });
      expect(res.status).toBe(400);
      const body = (await res.json()) as {
        error: { type: string; data: Array<{ field: string }> };
      };
      expect(body.error.type).toBe("VALIDATION_ERROR");
      expect(body.error.data.map(d => d.field)).toEqual(["after"]);
    }
  });

  it("bounds streams per user and per gateway: 503 with Retry-After, a slot back when one closes", async () => {
    const b1 = await stream(bob);
    const b2 = await stream(bob);
    expect([b1.status, b2.status]).toEqual([200, 200]);
    const b3 = await fetch(`${p.baseUrl}/api/me/events`, {
      headers: { authorization: `Bearer ${bob.token}` },
    });
    expect(b3.status).toBe(503);
    expect(b3.headers.get("retry-after")).toBe("5");
    const body = (await b3.json()) as { error: { type: string; message: string } };
    expect(body.error).toMatchObject({ type: "SERVICE_UNAVAILABLE" });
    expect(body.error.message).toMatch(/per user/);

    const d1 = await stream(dan);
    expect(d1.status).toBe(200);
    const d2 = await stream(dan); // the gateway's third
    expect(d2.status).toBe(503);
    expect(d2.headers.get("retry-after")).toBe("5");

    b1.close();
    await expect
      .poll(async () => {
        const again = await stream(dan);
        again.close();
        return again.status;
      })
      .toBe(200);
    b2.close();
    d1.close();
  });

  it("takes the stream cookie a browser's EventSource sends, made from the bearer token", async () => {
    const anon = await fetch(`${p.baseUrl}/api/me/events/session`, { method: "POST" });
    expect(anon.status).toBe(401);

    const made = await fetch(`${p.baseUrl}/api/me/events/session`, {
      method: "POST",
      headers: { authorization: `Bearer ${ann.token}` },
    });
    expect(made.status).toBe(200);
    const { expiresAt } = (await made.json()) as { expiresAt: string };
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now() + 3600_000);
    const setCookie = made.headers.get("set-cookie") ?? "";
    expect(setCookie).toMatch(
      /^mintmesh_events=[^;]+; Path=\/api\/me\/events; HttpOnly; SameSite=Strict; Max-Age=\d+/,
    );
    const cookie = setCookie.split(";")[0];
    // The cookie is no API token.
    const asBearer = await p.client.get("/api/users/me", { token: cookie.split("=")[1] });
    expect(asBearer.status).toBe(401);

    const s = await stream(null, "", { cookie });
    expect(s.status).toBe(200);
    const token = await createToken(p.client, ann.token);
    await s.until(x =>
      x.events.some(e => (JSON.parse(e.data) as ActivityRow).tokenId === token.id),
    );
    s.close();

    const forged = await stream(null, "", { cookie: `${cookie}x` });
    expect(forged.status).toBe(401);

    const cleared = await fetch(`${p.baseUrl}/api/me/events/session`, { method: "DELETE" });
    expect(cleared.status).toBe(200);
    expect(cleared.headers.get("set-cookie")).toMatch(/^mintmesh_events=; .*Max-Age=0/);
  });
});

describe("a gateway with open live streams", () => {
  it("stops at once, ending them (clients resume elsewhere)", async () => {
    const p = await startPlatform(["api", "users", "activity"], { RATE_LIMIT_MAX: "0" });
    const ann = await registerUser(p.client, "ann");
    const streams = await Promise.all(
      [1, 2].map(() =>
        openSse(`${p.baseUrl}/api/me/events`, { authorization: `Bearer ${ann.token}` }),
      ),
    );
    expect(streams.map(s => s.status)).toEqual([200, 200]);
    const t0 = Date.now();
    await p.stop();
    // Neither the broker's graceful stop nor the HTTP server's close waited for them.
    expect(Date.now() - t0).toBeLessThan(3000);
    await Promise.all(streams.map(s => s.ended));
  });
});
