import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ActivityRow } from "../../lib/events/activity";
import type { LiveStreams } from "../../lib/gateway/live-stream";
import { launchChromium } from "../helpers/browser";
import { usePlatform, useUsers } from "../helpers/platform";
import { createToken } from "../helpers/tokens";

/**
 * GET /api/me/events with Chromium's own EventSource, on a page of the gateway's origin:
 * the page trades its bearer token for the stream cookie (POST /api/me/events/session),
 * opens `new EventSource("/api/me/events")` and collects what arrives while transfers are
 * made; when the gateway ends the stream, the browser reconnects by itself with
 * Last-Event-ID and the rows made meanwhile arrive, none twice.
 */

interface Seen {
  id: string;
  type: string;
  row: ActivityRow;
}

describe("the live stream in a browser", () => {
  const p = usePlatform(["api", "users", "tokens", "activity"], {
    env: { RATE_LIMIT_MAX: "0", LIVE_RETRY_MS: "200" },
  });
  const [ann, bob] = useUsers(p, ["ann", "bob"]);
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    browser = await launchChromium();
    page = await browser.newPage();
    // A page of the gateway's own origin (served by the test, not the gateway).
    await page.route(`${p.baseUrl}/live-test.html`, route =>
      route.fulfill({ contentType: "text/html", body: "<!doctype html><title>live</title>" }),
    );
    await page.goto(`${p.baseUrl}/live-test.html`);
  });
  afterAll(() => browser?.close());

  const seen = () => page.evaluate("window.seen") as Promise<Seen[]>;
  const opens = () => page.evaluate("window.opens") as Promise<number>;

  /** ann's rows once activity has recorded `n` of them. */
  async function historyOf(n: number): Promise<ActivityRow[]> {
    await expect.poll(async () => (await history()).length, { timeout: 10_000 }).toBe(n);
    return history();
  }

  async function history(): Promise<ActivityRow[]> {
    const page = await p.broker.call<{ rows: ActivityRow[] }, object>("activity.list", {
      actorId: ann.id,
      order: "asc",
      limit: 100,
    });
    return page.rows;
  }

  async function transfers(tokenId: string, n: number) {
    for (let i = 0; i < n; i++) {
      const res = await p.client.post(
        `/api/tokens/${tokenId}/transfers`,
        { to: bob.id, amount: "1" },
        { token: ann.token },
      );
      expect(res.status).toBe(201);
    }
  }

  it(
    "gets the rows live, and every row made while it reconnected",
    { timeout: 60_000 },
    async () => {
      // The page's own script (no DOM types here): it runs in Chromium as a page would.
      const status = await page.evaluate(`(async () => {
      const made = await fetch("/api/me/events/session", {
        method: "POST",
        headers: { authorization: "Bearer ${ann.token}" },
      });
      window.seen = [];
      window.opens = 0;
      const source = new EventSource("/api/me/events");
      source.onopen = () => window.opens++;
      for (const type of ["token.created", "transfer.out", "transfer.in"])
        source.addEventListener(type, e =>
          window.seen.push({ id: e.lastEventId, type: e.type, row: JSON.parse(e.data) }),
        );
      return made.status;
    })()`);
      expect(status).toBe(200);
      await expect.poll(opens).toBe(1);

      const token = await createToken(p.client, ann.token);
      await transfers(token.id, 3);
      let all = await historyOf(4);
      await expect.poll(async () => (await seen()).length).toBe(all.length);

      // The gateway ends every stream (as a restart would); EventSource comes back by itself.
      const api = p.broker.getLocalService("api") as unknown as { liveStreams: LiveStreams };
      api.liveStreams.stop();
      await transfers(token.id, 2); // while the browser is away
      api.liveStreams.start();
      await expect.poll(opens, { timeout: 10_000 }).toBe(2);
      await transfers(token.id, 1);
      all = await historyOf(7);
      await expect.poll(async () => (await seen()).length, { timeout: 10_000 }).toBe(all.length);
      await new Promise(r => setTimeout(r, 300));

      const got = await seen();
      expect(got.map(s => s.id)).toEqual(all.map(r => r.cursor));
      expect(got.map(s => s.type)).toEqual(all.map(r => r.type));
      expect(got.map(s => s.row)).toEqual(all);
    },
  );
});
