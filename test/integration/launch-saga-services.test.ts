import type { Service } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import UsersService from "../../services/users.service";
import TokensService from "../../services/tokens.service";
import DexService, { type DexMethods } from "../../services/dex.service";
import MarketingService from "../../services/marketing.service";
import SagasService, { type SagasVars } from "../../services/sagas.service";
import CatalogService from "../../services/catalog.service";
import AnalyticsService from "../../services/analytics.service";
import type { Meta } from "../../lib/shared/context";
import type { Token } from "../../lib/events/domain";
import { LAUNCH, type LaunchInput } from "../../lib/sagas/launch-saga";
import type { LiquidityOpDoc, Pool } from "../../lib/dex/liquidity-pools";
import type { Campaign, CampaignDoc } from "../../lib/marketing/campaigns";
import type { CatalogToken, AnalyticsSummary } from "../../lib/read-models/read-model";
import type { Saga, SagaDoc } from "../../lib/sagas/saga-log";
import type { DbMethods, DbVars } from "../../mixins/db.mixin";
import { failInTransaction, failOnce } from "../helpers/stores";
import { waitUntil } from "../helpers/cluster";
import { testBroker } from "../helpers/read-models";
import { uniqueSymbol } from "../helpers/tokens";
import { LAUNCH_COMPLETED, LAUNCH_UNDONE_AT_LIQUIDITY } from "../helpers/launches";

/**
 * The launch saga over the real services in one broker (users, tokens, dex, marketing,
 * sagas, and the catalog and analytics that read their events), on NeDB in memory and
 * the in-memory channels: the ledger after a launch, after an undone one, and after a
 * crash at each step.
 */

interface Holder {
  account: string;
  amount: string;
}

describe("the launch saga over the real services", () => {
  const broker = testBroker();
  for (const s of [UsersService, TokensService, DexService, MarketingService, CatalogService])
    broker.createService(s);
  broker.createService(AnalyticsService);
  // Settings are read when it starts: short backoffs, no periodic sweep (the tests recover).
  Object.assign(broker.createService(SagasService).settings, {
    backoffMs: 5,
    maxBackoffMs: 20,
    recoveryIntervalMs: 0,
  });
  let alice: string;
  const as = (id: string): { meta: Meta } => ({ meta: { user: { id } } });
  const sagas = () =>
    broker.getLocalService("sagas") as Service & DbMethods & Pick<DbVars, "database"> & SagasVars;

  beforeAll(async () => {
    await broker.start();
    const res = await broker.call<{ user: { id: string } }, object>("users.register", {
      email: "alice@example.com",
      password: "correct horse battery",
      displayName: "Alice",
    });
    alice = res.user.id;
  });
  afterAll(() => broker.stop());

  const input = (supply: string, liquidity: string): LaunchInput => ({
    token: { name: "Launched", symbol: uniqueSymbol("L"), decimals: 0, initialSupply: supply },
    liquidity: { amount: liquidity },
    marketing: { budget: "500" },
  });

  const holders = async (tokenId: string): Promise<Holder[]> =>
    (await broker.call<{ rows: Holder[] }, object>("tokens.holders", { id: tokenId, limit: 100 }))
      .rows;

  /** The ledger of a launched token: creator and pool, nobody else, the supply in total. */
  const expectLedger = async (tokenId: string, supply: bigint, liquidity: bigint) => {
    const rows = await holders(tokenId);
    expect(rows.reduce((s, h) => s + BigInt(h.amount), 0n)).toBe(supply);
    expect(rows).toEqual(
      expect.arrayContaining([
        { account: alice, amount: String(supply - liquidity) },
        { account: `pool_${tokenId}`, amount: String(liquidity) },
      ]),
    );
    expect(rows).toHaveLength(2);
    const pool = await broker.call<Pool, object>("dex.get", { tokenId });
    expect(pool).toEqual({
      tokenId,
      account: `pool_${tokenId}`,
      reserve: String(liquidity),
      providerId: alice,
    });
  };

  it("creates the token, fills its pool, activates its campaign, and answers 201", async () => {
    const meta: Meta = { user: { id: alice } };
    const saga = await broker.call<Saga, LaunchInput>("sagas.launch", input("1000", "400"), {
      meta,
    });
    expect(saga).toMatchObject(LAUNCH_COMPLETED);
    expect(meta).toMatchObject({ $statusCode: 201, $location: `/api/launches/${saga.id}` });
    const { token, campaign } = saga.result as { token: Token; campaign: Campaign };
    expect(campaign).toMatchObject({ tokenId: token.id, active: true, budget: "500" });
    await expectLedger(token.id, 1000n, 400n);

    // Two holders only, yet featured: its campaign is active (through marketing's events).
    await waitUntil(async () => {
      const view = await broker.call<CatalogToken, object>("catalog.get", { id: token.id });
      return view.featured && view.stats.holders === 2;
    }, 3000);
    await waitUntil(async () => {
      const s = await broker.call<AnalyticsSummary, object>("analytics.summary", {});
      return s.launches.completed >= 1;
    }, 5000);
  });

  it("undoes a launch whose liquidity exceeds the supply: token gone, symbol free, balances as before", async () => {
    const before = await broker.call("tokens.myBalances", {}, as(alice));
    const launch = input("100", "101");
    const saga = await broker.call<Saga, LaunchInput>("sagas.launch", launch, as(alice));
    expect(saga).toMatchObject(LAUNCH_UNDONE_AT_LIQUIDITY);
    expect(await broker.call("tokens.myBalances", {}, as(alice))).toEqual(before);
    const again = await broker.call<Token, object>(
      "tokens.create",
      { ...launch.token, initialSupply: "5" },
      as(alice),
    );
    expect(again.symbol).toBe(launch.token.symbol);
    await waitUntil(async () => {
      const s = await broker.call<AnalyticsSummary, object>("analytics.summary", {});
      return s.launches.compensated >= 1;
    }, 5000);
  });

  it.each([0, 1, 2])(
    "calls step %i again after a crash lost its answer, and nothing happens twice",
    async i => {
      const store = sagas().store<SagaDoc>("sagas");
      const lostAnswer = (_q: unknown, u: unknown) => {
        const steps = (u as { $set?: { steps?: Array<{ state: string }> } }).$set?.steps;
        return steps?.[i]?.state === "done";
      };
      // The last step's `done` is written in the transaction of the saga's end.
      const crash =
        i === 2
          ? failInTransaction(sagas().database, "sagas", "updateOne", lostAnswer)
          : failOnce(store, "updateOne", lostAnswer);
      const engine = sagas().engine;
      const started = await engine.start(LAUNCH, alice, `crash-${i}`, "fp", input("1000", "250"));
      await engine.idle();
      expect(crash.fired()).toBe(true);
      expect((await engine.find(started._id))!.state).toBe("running");

      // Its lease runs out (as its node's would, dead), and the periodic sweep takes it up.
      await store.update({ _id: started._id }, { $set: { leaseUntil: Date.now() - 1 } });
      expect(await engine.recover()).toBe(1);
      await engine.idle();
      const doc = (await engine.find(started._id))!;
      expect(doc.state).toBe("completed");
      expect(doc.steps[i].attempts).toBe(2);
      const token = (doc.result as { token: Token }).token;
      await expectLedger(token.id, 1000n, 250n);
      const marketing = broker.getLocalService("marketing") as Service & DbMethods;
      // Activated once: a second activation would have made version 2.
      const campaign = await marketing.store<CampaignDoc>("campaigns").findOne({ _id: token.id });
      expect(campaign).toMatchObject({ active: true, version: 1 });
    },
  );

  it("lets anyone read a pool's balance, and only the dex move tokens in or out of it", async () => {
    const saga = await broker.call<Saga, LaunchInput>(
      "sagas.launch",
      input("1000", "300"),
      as(alice),
    );
    const tokenId = (saga.result as { token: Token }).token.id;
    const pool = `pool_${tokenId}`;
    expect(await broker.call("tokens.balance", { id: tokenId, account: pool })).toMatchObject({
      amount: "300",
    });
    await expect(
      broker.call("tokens.transfer", { id: tokenId, to: pool, amount: "1" }, as(alice)),
    ).rejects.toMatchObject({ code: 404, data: [{ field: "to" }] });
    await expect(
      broker.call(
        "tokens.transferInternal",
        { tokenId, from: pool, to: alice, amount: "1", idempotencyKey: "steal" },
        { caller: "market" },
      ),
    ).rejects.toMatchObject({ code: 404, data: [{ field: "from" }] });
    await expect(
      broker.call(
        "tokens.transferFrom",
        { id: tokenId, from: pool, to: alice, amount: "1" },
        as(alice),
      ),
    ).rejects.toMatchObject({ code: 404 });
    await expectLedger(tokenId, 1000n, 300n);
  });

  it("gives liquidity back once per key, and refuses an add its removal overtook", async () => {
    const token = await broker.call<Token, object>(
      "tokens.create",
      { name: "Pooled", symbol: uniqueSymbol("P"), decimals: 0, initialSupply: "100" },
      as(alice),
    );
    const add = { tokenId: token.id, providerId: alice, amount: "60", key: "add-1" };
    await broker.call("dex.addLiquidity", add);
    await broker.call("dex.addLiquidity", add); // a retry: nothing more moves
    expect(await broker.call("dex.get", { tokenId: token.id })).toMatchObject({ reserve: "60" });
    for (let n = 0; n < 2; n++)
      expect(await broker.call("dex.removeLiquidity", { tokenId: token.id, key: "add-1" })).toEqual(
        { tokenId: token.id, pool: null },
      );
    expect(await holders(token.id)).toEqual([{ account: alice, amount: "100" }]);
    await expect(broker.call("dex.get", { tokenId: token.id })).rejects.toMatchObject({
      code: 404,
    });

    // Removed before it arrived (a timed-out add still on its way): the add is refused.
    await broker.call("dex.removeLiquidity", { tokenId: token.id, key: "add-2" });
    await expect(broker.call("dex.addLiquidity", { ...add, key: "add-2" })).rejects.toMatchObject({
      code: 409,
    });
    expect(await holders(token.id)).toEqual([{ account: alice, amount: "100" }]);
  });

  it("forgets finished liquidity operations past their retention, never unfinished ones", async () => {
    const dex = broker.getLocalService("dex") as Service & DbMethods & DexMethods;
    const ops = dex.store<LiquidityOpDoc>("ops");
    const pending: LiquidityOpDoc = {
      _id: "add:stuck",
      tokenId: "tok_x",
      providerId: alice,
      amount: "1",
      state: "pending",
      createdAt: new Date(0).toISOString(),
    };
    await ops.insert(pending);
    const finished = await ops.count({ state: { $in: ["done", "failed", "undone"] } });
    expect(finished).toBeGreaterThan(0);
    expect(await dex.pools().prune(new Date(Date.now() + 1000))).toBe(finished);
    expect(await ops.find({})).toEqual([pending]);
  });
});
