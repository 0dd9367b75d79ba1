import os from "node:os";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../helpers/browser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterDown, useCluster, type Gateway, type NodeProcess } from "../helpers/cluster";
import { registerUser } from "../helpers/http";
import { createToken } from "../helpers/tokens";

/**
 * The operator page (/ops) in a real headless Chromium, on a cluster of real processes: an
 * admin logs in through the page's own form and sees every node listed; a node SIGKILLed
 * leaves the list (or is marked unavailable) within seconds; a node whose calls fail (FAULTS)
 * gets the gateway's circuit breaker for it opened, and the page shows it; the market's
 * escrow and its auctions ending soonest are drawn from the snapshot.
 */

const ADMIN = "ops-admin@example.com";
const PASSWORD = "correct horse battery";

describe.skipIf(clusterDown())("the operator page in a browser", () => {
  const cluster = useCluster("ops", { env: { RATE_LIMIT_MAX: "0" } });
  const names = ["users", "tokens", "catalog", "sagas", "doomed"];
  let gateway: Gateway;
  let doomed: NodeProcess;
  let browser: Browser | undefined;
  let page: Page;

  /** The page's row of a node, with the state it shows. */
  const row = (name: string, state?: string) =>
    `tr[data-node="${cluster.nodeId(name)}"]${state ? `[data-state="${state}"]` : ""}`;

  beforeAll(async () => {
    const started = await Promise.all([
      cluster.node({ name: "users", services: ["users"] }),
      cluster.node({ name: "tokens", services: ["tokens"] }),
      cluster.node({ name: "catalog", services: ["catalog"] }),
      cluster.node({ name: "sagas", services: ["sagas"] }),
      // The one to kill: analytics, which nothing else here needs.
      cluster.node({ name: "doomed", services: ["analytics"] }),
      cluster.gateway({
        env: {
          ADMIN_EMAILS: ADMIN,
          READY_SERVICES: "users,tokens,catalog,sagas,analytics",
          // Opens after a few failures and stays open while the page is looked at.
          CB_MIN_REQUESTS: "4",
          CB_HALF_OPEN_MS: "120000",
        },
      }),
      launchChromium(),
    ]);
    doomed = started[4];
    gateway = started[5];
    browser = started[6];
    page = await browser.newPage();
  });

  afterAll(async () => {
    await browser?.close();
  });

  it("logs an admin in through the form and lists every node", async () => {
    const reg = await gateway.client.post("/api/auth/register", {
      email: ADMIN,
      password: PASSWORD,
      displayName: "Operator",
    });
    expect(reg.status).toBe(201);

    await page.goto(`${gateway.client.baseUrl}/ops`);
    await page.waitForSelector("#login-form", { state: "visible" });
    // Nothing of the cluster is shown before logging in.
    expect(await page.locator("#dashboard").isVisible()).toBe(false);
    await page.fill("#email", ADMIN);
    await page.fill("#password", PASSWORD);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#dashboard", { state: "visible", timeout: 10_000 });

    for (const name of [...names, "gateway"])
      await page.waitForSelector(row(name, "available"), { timeout: 15_000 });
    // Each with the services it hosts.
    await expect.poll(() => page.locator(row("doomed")).innerText()).toContain("analytics");
    await expect.poll(() => page.locator(row("gateway")).innerText()).toContain("this gateway");
    // The session is the HttpOnly cookie: no script can read it.
    expect(await page.evaluate("document.cookie")).toBe("");
    // Live: the status line follows the stream.
    const before = await page.locator("#status").innerText();
    await expect
      .poll(() => page.locator("#status").innerText(), { timeout: 10_000 })
      .not.toBe(before);
  });

  it("shows a SIGKILLed node gone within seconds", async () => {
    await page.waitForSelector(row("doomed", "available"));
    const killedAt = Date.now();
    await doomed.kill("SIGKILL");
    // First shown unreachable (its health call times out), then gone from the list or listed
    // unavailable once the registry stops counting on it: never shown available again.
    await page.waitForSelector(row("doomed", "available"), { state: "detached", timeout: 20_000 });
    const shown = async () =>
      (await page.locator(row("doomed")).count()) === 0
        ? "gone"
        : await page.locator(row("doomed")).getAttribute("data-state");
    await expect.poll(shown, { timeout: 20_000, interval: 250 }).toMatch(/^(gone|unavailable)$/);
    const goneAfterMs = Date.now() - killedAt;
    // Heartbeat timeout (3 s) plus the registry's sweep, plus one refresh of the page.
    expect(goneAfterMs).toBeLessThan(15_000);
    // The others are still there.
    for (const name of ["users", "tokens", "catalog", "sagas", "gateway"])
      expect(await page.locator(row(name, "available")).count()).toBe(1);
  });

  it("shows the breaker FAULTS opened on a failing node", async () => {
    const faulty = cluster.nodeId("faulty");
    await cluster.node({ name: "faulty", services: ["dex"], env: { FAULTS: "dex.get:abort=503" } });
    await page.waitForSelector(row("faulty", "available"), { timeout: 15_000 });
    expect(await page.locator(`tr[data-breaker="dex.get"]`).count()).toBe(0);

    // Every GET /api/pools/:id reaches dex.get on the faulty node and fails there, until the
    // gateway's breaker for that endpoint opens (CB_MIN_REQUESTS=4).
    for (let i = 0; i < 12; i++) {
      const res = await gateway.client.get(`/api/pools/tok_missing${i}`);
      expect(res.status).toBe(503);
    }
    const breaker = `tr[data-breaker="dex.get"][data-target="${faulty}"]`;
    await page.waitForSelector(breaker, { timeout: 15_000 });
    const text = await page.locator(breaker).innerText();
    expect(text).toContain(cluster.nodeId("gateway")); // the caller whose breaker it is
    expect(text).toContain("open");
    await page.screenshot({
      path: path.join(os.tmpdir(), `mintmesh-ops-${cluster.namespace}.png`),
    });
  });

  it("shows the market's escrow beside what it holds, and the auctions ending soonest", async () => {
    await Promise.all([
      cluster.node({ name: "nfts", services: ["nfts"] }),
      cluster.node({ name: "market", services: ["market"] }),
    ]);
    await page.waitForSelector(row("market", "available"), { timeout: 15_000 });
    const c = gateway.client;
    const [seller, buyer] = await Promise.all(["seller", "buyer"].map(n => registerUser(c, n)));
    const tok = (await createToken(c, buyer.token, { decimals: 0, initialSupply: "1000" })).id;
    const col = await c.post<{ id: string }>(
      "/api/collections",
      { name: "Ops", symbol: "OPS", royaltyBps: 0 },
      { token: seller.token },
    );
    const mint = async () =>
      (
        await c.post<{ id: string }>(
          `/api/collections/${col.body.id}/nfts`,
          { metadata: { name: "Lot" } },
          { token: seller.token },
        )
      ).body.id;
    const [offered, auctioned] = [await mint(), await mint()];
    const offer = await c.post(
      "/api/market/offers",
      { nftId: offered, priceTokenId: tok, price: "300" },
      { token: buyer.token },
    );
    expect(offer.status, offer.text).toBe(201);
    const auction = await c.post<{ id: string }>(
      "/api/market/auctions",
      {
        nftId: auctioned,
        priceTokenId: tok,
        reservePrice: "100",
        endsAt: new Date(Date.now() + 3_600_000).toISOString(),
      },
      { token: seller.token },
    );
    expect(auction.status, auction.text).toBe(201);
    const bid = await c.post(
      `/api/market/auctions/${auction.body.id}/bids`,
      { amount: "150" },
      { token: buyer.token },
    );
    expect(bid.status, bid.text).toBe(201);

    // Columns: token, balance, held, offers, highest bids, purchases in flight, agrees.
    const line = `#escrow tr[data-token="${tok}"]`;
    await page.waitForSelector(line, { timeout: 15_000 });
    await expect
      .poll(async () => (await page.locator(`${line} td`).allInnerTexts()).join("|"), {
        timeout: 10_000,
      })
      .toBe(`${tok}|450|450|300|150|0|yes`);
    expect(await page.locator("#escrow-summary").innerText()).toBe("balance = held");
    const ending = await page
      .locator(`#auctions tr[data-auction="${auction.body.id}"]`)
      .innerText();
    expect(ending).toContain(auctioned);
    expect(ending).toContain("150");
  });
});
