import { beforeEach, describe, expect, it } from "vitest";
import {
  CatalogViews,
  type CatalogStores,
  type TransferDoc,
} from "../../../lib/read-models/catalog-stats";
import { openCatalogStores } from "../../helpers/read-models";
import type { DomainEvent, TokenTransferred } from "../../../lib/events/domain";
import { TokenScript } from "../../helpers/channels";
import { failOnce } from "../../helpers/stores";

/**
 * The catalog's view engine without a broker, over real NeDB stores in memory: stats
 * stay exact under redelivery, reordering and a crash at every step of a stats change.
 * A crash is a store call that throws; the engine instance is then dropped and a new one
 * over the same stores goes on, as a process started again on the same database would.
 */

const settings = { featuredMinHolders: 3 };
let stores: CatalogStores;
let views: CatalogViews;

beforeEach(async () => {
  stores = await openCatalogStores();
  views = new CatalogViews(stores, settings);
});

/** A new process on the same stores. */
const restart = () => (views = new CatalogViews(stores, settings));

const statsOf = async (tokenId: string) => {
  const v = await views.find(tokenId);
  return { holders: v?.holders, transfers: v?.transfers, pending: v?.pending };
};

const transfers = (...events: Array<DomainEvent<TokenTransferred>>) => views.transferred(events);

describe("catalog views: events in any order, any number of times", () => {
  it("shows a created token with its creator as the only holder", async () => {
    const s = new TokenScript({ creatorId: "alice", name: "Mint", symbol: "MNT" });
    await views.created(s.created());
    const list = await views.list({}, { limit: 10, offset: 0 });
    expect(list).toEqual({
      rows: [{ ...s.token, featured: false, stats: { holders: 1, transfers: 0 } }],
      total: 1,
    });
  });

  it("counts each transfer and holder once however often events come, alone or together", async () => {
    const s = new TokenScript({ creatorId: "alice", totalSupply: "100" });
    const created = s.created();
    const a = s.transfer("alice", "bob", "10");
    const b = s.transfer("alice", "carol", "10");
    const c = s.transfer("bob", "alice", "10"); // bob holds nothing again
    await views.created(created);
    await transfers(a, b, c, a);
    await transfers(c);
    await views.created(created);
    await transfers(b, a);
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 3, pending: [] });
  });

  it("keeps what a transfer brought before tokens.created, and shows the token only once created", async () => {
    const s = new TokenScript({ creatorId: "dave", totalSupply: "10" });
    const created = s.created();
    await transfers(s.transfer("dave", "erin", "4"));
    expect(await views.find(s.token.id)).toMatchObject({ hasToken: false, transfers: 1 });
    expect((await views.list({ creator: "dave" }, { limit: 10, offset: 0 })).total).toBe(0);

    await views.created(created);
    const list = await views.list({ creator: "dave" }, { limit: 10, offset: 0 });
    expect(list.rows.map(r => r.stats)).toEqual([{ holders: 2, transfers: 1 }]);
  });

  it("keeps the newest fields whatever order created and updates arrive in", async () => {
    const s = new TokenScript({ creatorId: "frank", name: "First" });
    const created = s.created();
    const older = s.updated({ name: "Second" });
    const newer = s.updated({ name: "Third" });
    await views.updated(newer);
    await views.created(created);
    await views.updated(older);
    expect(await views.find(s.token.id)).toMatchObject({ hasToken: true, name: "Third" });
  });

  it("leaves a tombstone no late event brings back", async () => {
    const s = new TokenScript({ creatorId: "gina" });
    const created = s.created();
    await views.deleted(s.deleted());
    await views.created(created);
    await views.updated(s.updated({ name: "Back" }));
    await transfers(s.transfer("gina", "x", "1"));
    expect(await views.find(s.token.id)).toMatchObject({ deleted: true });
    expect((await views.list({ creator: "gina" }, { limit: 10, offset: 0 })).total).toBe(0);
  });

  it("counts a transfer once when two replicas apply it at the same time", async () => {
    const s = new TokenScript({ creatorId: "hank", totalSupply: "100" });
    await views.created(s.created());
    const t = s.transfer("hank", "ivy", "5");
    const other = new CatalogViews(stores, settings);
    await Promise.all([transfers(t), other.transferred([t]), transfers(t)]);
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 1, pending: [] });
  });
});

describe("catalog views: a crash at each step of a stats change", () => {
  let s: TokenScript;
  let first: DomainEvent<TokenTransferred>;
  beforeEach(async () => {
    s = new TokenScript({ creatorId: "olga", totalSupply: "100" });
    await views.created(s.created());
    first = s.transfer("olga", "pat", "30");
  });
  const transferRow = (id: string) => (doc: TransferDoc) => doc._id === id;

  it("between the balances and step 1: the redelivery counts it", async () => {
    failOnce(stores.views, "updateOne", (_q, update) => "$push" in update);
    await expect(transfers(first)).rejects.toThrow(/crash point/);
    expect(await statsOf(s.token.id)).toEqual({ holders: 1, transfers: 0, pending: [] });

    restart();
    await transfers(first);
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 1, pending: [] });
  });

  it("between step 1 (counts and pending) and step 2 (sources): the token's next event finishes it", async () => {
    const crash = failOnce(stores.transfers, "insert", transferRow(first.data.transferId));
    await expect(transfers(first)).rejects.toThrow(/crash point/);
    expect(crash.fired()).toBe(true);
    // Counted, and the keys say what is still to write.
    expect((await statsOf(s.token.id)).transfers).toBe(1);
    expect(await views.find(s.token.id)).toMatchObject({ pending: expect.any(Array) });
    expect((await views.find(s.token.id))?.pending).toHaveLength(2);

    restart();
    const next = s.transfer("pat", "quinn", "30"); // pat holds nothing again
    await transfers(next);
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 2, pending: [] });
    await transfers(first, next); // redelivered: nothing changes
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 2, pending: [] });
    expect(await stores.transfers.count({ tokenId: s.token.id })).toBe(2);
  });

  it.each([
    ["its transfer row", () => failOnce(stores.transfers, "insert")],
    ["a holder's flip", () => failOnce(stores.balances, "updateOne", q => "flips" in q)],
  ])(
    "between step 1 and step 2 (%s): the redelivery finishes it without counting again",
    async (_point, crash) => {
      crash();
      await expect(transfers(first)).rejects.toThrow(/crash point/);
      expect((await views.find(s.token.id))?.pending).toHaveLength(2);
      restart();
      await transfers(first);
      expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 1, pending: [] });
    },
  );

  it("between step 2 (sources) and step 3 (pull): the sweep at start-up finishes it", async () => {
    failOnce(stores.views, "updateOne", (_q, update) => "$pull" in update);
    await expect(transfers(first)).rejects.toThrow(/crash point/);
    expect((await views.find(s.token.id))?.pending).toHaveLength(2);
    expect(await stores.transfers.count({ tokenId: s.token.id })).toBe(1);

    restart();
    await views.upgradeStats();
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 1, pending: [] });
    await transfers(first);
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 1, pending: [] });
  });

  it("between step 1 and step 2, then a replica applies the same transfer again: still once", async () => {
    failOnce(stores.transfers, "insert");
    await expect(transfers(first)).rejects.toThrow(/crash point/);
    restart();
    const other = new CatalogViews(stores, settings);
    await Promise.all([transfers(first), other.transferred([first]), views.upgradeStats()]);
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 1, pending: [] });
  });
});

describe("catalog views: start-up", () => {
  it("upgrades views of the recounting version once, then counts on from there", async () => {
    const s = new TokenScript({ creatorId: "olga", totalSupply: "100" });
    const created = s.created();
    const first = s.transfer("olga", "pat", "30");
    await views.created(created);
    await transfers(first);
    // Back to what the recounting version left: no rev, no pending, no flips, and stats
    // not yet recounted.
    await stores.views.update(
      { _id: s.token.id },
      { $unset: { rev: true, pending: true }, $set: { holders: 0, transfers: 0, statsSeq: 2 } },
    );
    await stores.balances.update({ tokenId: s.token.id }, { $unset: { flips: true } });
    expect(await views.find(s.token.id)).not.toHaveProperty("rev");

    await views.upgradeStats();
    await views.upgradeStats(); // a second start changes nothing
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 1, pending: [] });

    await transfers(first, s.transfer("pat", "olga", "30"));
    expect(await statsOf(s.token.id)).toEqual({ holders: 1, transfers: 2, pending: [] });
  });

  it("marks tokens featured from the holders setting", async () => {
    const s = new TokenScript({ creatorId: "a", totalSupply: "9" });
    await views.created(s.created());
    await transfers(s.transfer("a", "b", "1"), s.transfer("a", "c", "1"));
    expect(await views.find(s.token.id)).toMatchObject({ holders: 3, featured: true });
    // Each change of the stats applies the engine's setting.
    const strict = new CatalogViews(stores, { featuredMinHolders: 4 });
    await strict.transferred([s.transfer("a", "a", "0")]);
    expect(await views.find(s.token.id)).toMatchObject({ holders: 3, featured: false });
    expect((await views.list({ featured: true }, { limit: 5, offset: 0 })).total).toBe(0);
  });
});

describe("catalog views: retention", () => {
  it("forgets the rows of transfers counted before the cut-off, and only those", async () => {
    const s = new TokenScript({ creatorId: "alice", totalSupply: "100" });
    await views.created(s.created());
    const [old, recent] = [s.transfer("alice", "bob", "1"), s.transfer("alice", "bob", "1")];
    await transfers(old, recent);
    await stores.transfers.update({ _id: old.data.transferId }, { $set: { at: 1 } });
    expect(await views.pruneTransferRows(new Date(Date.now() - 60_000))).toBe(1);
    expect((await stores.transfers.find({})).map(r => r._id)).toEqual([recent.data.transferId]);
    // The counts stay: pruning forgets how a transfer was counted, not that it was.
    expect(await statsOf(s.token.id)).toMatchObject({ transfers: 2 });
  });
});
