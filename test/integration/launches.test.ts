import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type ErrorBody, type Registered } from "../helpers/http";
import { allHolders, sumAmounts, uniqueSymbol, type TokenBody } from "../helpers/tokens";
import { waitUntil } from "../helpers/cluster";
import type { Saga } from "../../lib/sagas/saga-log";
import type { Pool } from "../../lib/dex/liquidity-pools";
import type { AnalyticsSummary, CatalogToken } from "../../lib/read-models/read-model";
import { LAUNCH_COMPLETED, LAUNCH_UNDONE_AT_LIQUIDITY } from "../helpers/launches";

/**
 * Token launches over HTTP (POST/GET /api/launches, GET /api/pools/:tokenId): the real
 * gateway and every service a launch touches in one process, NeDB in memory. A launch
 * that ends in time answers 201, one still running 202; one that cannot finish is undone
 * and leaves the creator as before; with FAULTS, a failing marketing step undoes the
 * liquidity and the token.
 */

const SERVICES = ["api", "users", "tokens", "dex", "marketing", "sagas", "catalog", "analytics"];
const ENV = { READY_SERVICES: "users,tokens,dex,marketing,sagas", RATE_LIMIT_MAX: "0" };

interface LaunchResult {
  token: TokenBody;
  pool: Pool;
}

const launchBody = (supply: string, liquidity: string, symbol = uniqueSymbol("L")) => ({
  token: { name: "Launched", symbol, decimals: 0, initialSupply: supply },
  liquidity: { amount: liquidity },
  marketing: { budget: "1000" },
});

/** The token a launch created: its first step's result, shown once the step is done. */
const tokenOfSaga = (saga: Saga): string => (saga.steps[0].result as TokenBody).id;

/** A token undone by its launch: no token, no pool, nothing held of it. */
async function expectGone(p: Platform, tokenId: string): Promise<void> {
  expect((await p.client.get(`/api/tokens/${tokenId}`)).status).toBe(404);
  expect((await p.client.get(`/api/pools/${tokenId}`)).status).toBe(404);
  expect((await p.client.get(`/api/tokens/${tokenId}/holders`)).status).toBe(404);
}

/** What the creator holds, for "as before". */
const balancesOf = async (p: Platform, who: Registered) =>
  (await p.client.get("/api/me/balances?limit=100", { token: who.token })).body;

describe("token launches over HTTP", () => {
  let p: Platform;
  let ann: Registered;
  let bob: Registered;

  beforeAll(async () => {
    p = await startPlatform(SERVICES, ENV);
    [ann, bob] = await Promise.all([registerUser(p.client, "ann"), registerUser(p.client, "bob")]);
  });
  afterAll(() => p.stop());

  const launch = (body: unknown, who = ann, key?: string) =>
    p.client.post<Saga>("/api/launches", body, {
      token: who.token,
      headers: key ? { "idempotency-key": key } : {},
    });
  // Analytics counts launches from events, so it catches up a little after the answer.
  const launchesCounted = (how: keyof AnalyticsSummary["launches"]) =>
    waitUntil(async () => {
      const res = await p.client.get<AnalyticsSummary>("/api/analytics/summary", {
        token: ann.token,
      });
      return res.body.launches[how] === 1;
    }, 5000);

  it("launches a token: 201 with the completed saga, its pool, a featured token", async () => {
    const res = await launch(launchBody("1000000", "250000"));
    expect(res.status).toBe(201);
    const saga = res.body;
    expect(res.headers.get("location")).toBe(`/api/launches/${saga.id}`);
    expect(saga).toMatchObject({ id: expect.stringMatching(/^sag_/), ...LAUNCH_COMPLETED });
    const { token } = saga.result as LaunchResult;

    const pool = await p.client.get<Pool>(`/api/pools/${token.id}`); // no user needed
    expect(pool.status).toBe(200);
    expect(pool.body).toEqual({
      tokenId: token.id,
      account: `pool_${token.id}`,
      reserve: "250000",
      providerId: ann.id,
    });
    const holders = await allHolders(p.client, token.id);
    expect(sumAmounts(holders)).toBe(1_000_000n);
    expect(holders).toEqual([
      { account: ann.id, amount: "750000" },
      { account: `pool_${token.id}`, amount: "250000" },
    ]);
    // Featured with two holders: through its campaign.
    await waitUntil(async () => {
      const res = await p.client.get<CatalogToken>(`/api/tokens/${token.id}`);
      return res.body.featured;
    }, 5000);
    const featured = await p.client.get<{ rows: CatalogToken[] }>(
      `/api/tokens?featured=true&creator=${ann.id}`,
    );
    expect(featured.body.rows.map(t => t.id)).toContain(token.id);
    await launchesCounted("completed");
  });

  it("undoes a launch whose liquidity exceeds the supply: the creator ends as before", async () => {
    const before = await balancesOf(p, ann);
    const symbol = uniqueSymbol("U");
    const res = await launch(launchBody("1000", "1001", symbol));
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject(LAUNCH_UNDONE_AT_LIQUIDITY);
    expect(await balancesOf(p, ann)).toEqual(before);
    await expectGone(p, tokenOfSaga(res.body));
    // The symbol is free again.
    const again = await p.client.post<TokenBody>(
      "/api/tokens",
      { name: "Again", symbol, decimals: 0, initialSupply: "1" },
      { token: ann.token },
    );
    expect(again.status).toBe(201);
    await launchesCounted("compensated");
  });

  it("shows a launch to its creator only, and lists the caller's own, newest first", async () => {
    const first = await launch(launchBody("10", "1"));
    const second = await launch(launchBody("10", "2"));
    const mine = await p.client.get<Saga>(`/api/launches/${first.body.id}`, { token: ann.token });
    expect(mine.status).toBe(200);
    expect(mine.body).toEqual(first.body);
    const theirs = await p.client.get<ErrorBody>(`/api/launches/${first.body.id}`, {
      token: bob.token,
    });
    expect(theirs.status).toBe(404);
    expect(theirs.body.error.type).toBe("NOT_FOUND");
    expect((await p.client.get(`/api/launches/sag_nope`, { token: ann.token })).status).toBe(404);
    expect((await p.client.get(`/api/launches/${first.body.id}`)).status).toBe(401);

    const list = await p.client.get<{ rows: Saga[]; total: number }>("/api/launches?limit=2", {
      token: ann.token,
    });
    expect(list.status).toBe(200);
    expect(list.body.rows.map(s => s.id)).toEqual([second.body.id, first.body.id]);
    expect(list.body.total).toBeGreaterThanOrEqual(4);
    const bobs = await p.client.get<{ rows: Saga[]; total: number }>("/api/launches", {
      token: bob.token,
    });
    expect(bobs.body).toEqual({ rows: [], total: 0 });
  });

  it("answers a repeated Idempotency-Key with the first launch, launching once", async () => {
    const body = launchBody("500", "100");
    const a = await launch(body, ann, "launch-once");
    const b = await launch(body, ann, "launch-once");
    expect(b.status).toBe(201);
    expect(b.body.id).toBe(a.body.id);
    expect(b.headers.get("idempotent-replayed")).toBe("true");
    const taken = await launch(launchBody("500", "100", body.token.symbol));
    expect(taken.body).toMatchObject({
      state: "compensated",
      error: { step: "createToken", type: "CONFLICT" },
    });
  });

  it("needs a user and a valid body", async () => {
    const anonymous = await p.client.post("/api/launches", launchBody("1", "1"));
    expect(anonymous.status).toBe(401);
    const bad = await launch({
      token: { name: "X", symbol: "bad", decimals: 0, initialSupply: "1" },
      liquidity: { amount: "-1" },
    });
    expect(bad.status).toBe(400);
    const fields = (bad.body as unknown as ErrorBody).error.data?.map(d => d.field).sort();
    expect(fields).toEqual(["liquidity.amount", "token.symbol"]);
    expect((await p.client.get("/api/pools/tok_nope")).status).toBe(404);
  });
});

describe("a launch still running when the answer is due", () => {
  let p: Platform;
  let ann: Registered;

  beforeAll(async () => {
    p = await startPlatform(SERVICES, {
      ...ENV,
      SAGAS_WAIT_MS: "100",
      FAULTS: "dex.addLiquidity:delay=600ms",
    });
    ann = await registerUser(p.client, "ann");
  });
  afterAll(() => p.stop());

  it("answers 202 with the running saga and its Location, which shows it end", async () => {
    const res = await p.client.post<Saga>("/api/launches", launchBody("100", "10"), {
      token: ann.token,
    });
    expect(res.status).toBe(202);
    expect(res.body.state).toBe("running");
    const location = res.headers.get("location");
    expect(location).toBe(`/api/launches/${res.body.id}`);
    const get = () => p.client.get<Saga>(location!, { token: ann.token });
    await waitUntil(async () => (await get()).body.state === "completed", 5000);
    const done = (await get()).body;
    expect(done.steps.map(s => s.state)).toEqual(["done", "done", "done"]);
  });
});

describe("a launch whose marketing step fails (FAULTS)", () => {
  let p: Platform;
  let ann: Registered;

  beforeAll(async () => {
    p = await startPlatform(SERVICES, { ...ENV, FAULTS: "marketing.activate:abort=500" });
    ann = await registerUser(p.client, "ann");
  });
  afterAll(() => p.stop());

  it("gives the liquidity back and deletes the token", async () => {
    const before = await balancesOf(p, ann);
    const res = await p.client.post<Saga>("/api/launches", launchBody("100", "40"), {
      token: ann.token,
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      state: "compensated",
      error: { step: "activateMarketing", type: "INTERNAL_ERROR" },
      steps: [
        { name: "createToken", state: "compensated" },
        { name: "addLiquidity", state: "compensated" },
        // Its outcome unknown (a 5xx): turned off too, which is harmless if it never was on.
        { name: "activateMarketing", state: "compensated" },
      ],
    });
    expect(await balancesOf(p, ann)).toEqual(before);
    await expectGone(p, tokenOfSaga(res.body));
  });
});
