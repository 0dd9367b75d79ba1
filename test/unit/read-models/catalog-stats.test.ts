import { beforeEach, describe, expect, it } from "vitest";
import type { DomainEvent } from "../../../lib/events/domain";
import { catalogInMemory } from "../../helpers/read-models";
import { TokenScript } from "../../helpers/channels";
import { atEachWrite, failInTransaction } from "../../helpers/stores";

/**
 * The catalog's view engine without a broker, over SQLite in memory, fed as the service
 * feeds it: each delivery one batch, applied with its eventIds in one transaction. Stats
 * stay exact under redelivery and reordering, and a crash at any write of a batch leaves
 * none of it: the redelivery applies it once.
 */

const settings = { featuredMinHolders: 3 };
let catalog: ReturnType<typeof catalogInMemory>;

beforeEach(() => {
  catalog = catalogInMemory(settings);
});

const deliver = (...events: DomainEvent[]) => catalog.deliver(...events);
const statsOf = async (tokenId: string) => {
  const v = await catalog.views.find(tokenId);
  return { holders: v?.holders, transfers: v?.transfers };
};

describe("catalog views: events in any order, any number of times", () => {
  it("shows a created token with its creator as the only holder", async () => {
    const s = new TokenScript({ creatorId: "alice", name: "Mint", symbol: "MNT" });
    await deliver(s.created());
    const list = await catalog.views.list({}, { limit: 10, offset: 0 });
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
    await deliver(created);
    await deliver(a, b, c, a);
    await deliver(c);
    await deliver(created);
    await deliver(b, a);
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 3 });
  });

  it("keeps what a transfer brought before tokens.created, and shows the token only once created", async () => {
    const s = new TokenScript({ creatorId: "dave", totalSupply: "10" });
    const created = s.created();
    await deliver(s.transfer("dave", "erin", "4"));
    expect(await catalog.views.find(s.token.id)).toMatchObject({ hasToken: false, transfers: 1 });
    expect((await catalog.views.list({ creator: "dave" }, { limit: 10, offset: 0 })).total).toBe(0);

    await deliver(created);
    const list = await catalog.views.list({ creator: "dave" }, { limit: 10, offset: 0 });
    expect(list.rows.map(r => r.stats)).toEqual([{ holders: 2, transfers: 1 }]);
  });

  it("keeps the newest fields whatever order created and updates arrive in", async () => {
    const s = new TokenScript({ creatorId: "frank", name: "First" });
    const created = s.created();
    const older = s.updated({ name: "Second" });
    const newer = s.updated({ name: "Third" });
    await deliver(newer);
    await deliver(created);
    await deliver(older);
    expect(await catalog.views.find(s.token.id)).toMatchObject({ hasToken: true, name: "Third" });
  });

  it("leaves a tombstone no late event brings back", async () => {
    const s = new TokenScript({ creatorId: "gina" });
    const created = s.created();
    await deliver(s.deleted());
    await deliver(created);
    await deliver(s.updated({ name: "Back" }));
    await deliver(s.transfer("gina", "x", "1"));
    expect(await catalog.views.find(s.token.id)).toMatchObject({ deleted: true });
    expect((await catalog.views.list({ creator: "gina" }, { limit: 10, offset: 0 })).total).toBe(0);
  });

  it("counts a transfer once when replicas apply it at the same time", async () => {
    const s = new TokenScript({ creatorId: "hank", totalSupply: "100" });
    await deliver(s.created());
    const t = s.transfer("hank", "ivy", "5");
    const outcomes = await Promise.allSettled([deliver(t), deliver(t), deliver(t)]);
    expect(outcomes.filter(o => o.status === "fulfilled").length).toBeGreaterThan(0);
    expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 1 });
  });

  it("marks tokens featured from the holders setting", async () => {
    const s = new TokenScript({ creatorId: "a", totalSupply: "9" });
    await deliver(s.created());
    await deliver(s.transfer("a", "b", "1"), s.transfer("a", "c", "1"));
    expect(await catalog.views.find(s.token.id)).toMatchObject({ holders: 3, featured: true });
  });
});

describe("catalog views: a crash at each write of a batch", () => {
  // Every write a batch of a creation and transfers makes, as the place a crash stops it.
  const writes = [
    ["the new view", "views", "insert"],
    ["the token's fields", "views", "updateOne"],
    ["a new balance", "balances", "insert"],
    ["a balance's new version", "balances", "updateOne"],
    ["the applied eventIds", "applied", "insertMany"],
  ] as const;

  atEachWrite(
    writes,
    what => `at ${what}: nothing of the batch is applied, and its redelivery applies it once`,
    async (collection, method) => {
      const s = new TokenScript({ creatorId: "olga", totalSupply: "100" });
      const earlier = new TokenScript({ creatorId: "olga", totalSupply: "100" });
      await deliver(earlier.created()); // so that balances and views exist to be updated
      const batch = [
        s.created(),
        s.transfer("olga", "pat", "30"),
        s.transfer("pat", "quinn", "30"), // pat holds nothing again
        earlier.transfer("olga", "pat", "1"),
        earlier.transfer("olga", "pat", "1"),
      ];
      const before = {
        views: await catalog.stores.views.find({}, { sort: { _id: 1 } }),
        balances: await catalog.stores.balances.find({}, { sort: { _id: 1 } }),
        applied: await catalog.db.store("applied").count({}),
      };
      const crash = failInTransaction(catalog.db, collection, method);
      await expect(deliver(...batch)).rejects.toThrow(/crash point/);
      expect(crash.fired()).toBe(true);
      expect(await catalog.stores.views.find({}, { sort: { _id: 1 } })).toEqual(before.views);
      expect(await catalog.stores.balances.find({}, { sort: { _id: 1 } })).toEqual(before.balances);
      expect(await catalog.db.store("applied").count({})).toBe(before.applied);

      await deliver(...batch);
      await deliver(...batch); // and again: applied already
      expect(await statsOf(s.token.id)).toEqual({ holders: 2, transfers: 2 });
      expect(await statsOf(earlier.token.id)).toEqual({ holders: 2, transfers: 2 });
    },
  );
});
