import { beforeEach, describe, expect, it } from "vitest";
import { MARKET_COLLECTIONS, MarketBook, type ListingDoc } from "../../../lib/market/market-book";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import { Outbox, type OutboxDoc } from "../../../lib/messaging/outbox";
import type { DomainEvent } from "../../../lib/events/domain";
import type { Database } from "../../../lib/store/store";
import { atEachWrite, failInTransaction, outboxInto } from "../../helpers/stores";

/**
 * The marketplace's listings without a broker, over a real SQLite database in memory; a
 * crash at each write of a change rolls the whole change back.
 */

let db: Database;
let book: MarketBook;
let outbox: Outbox;
let published: DomainEvent[];
/** A listing of `nftId`, owned by `owner` as the nfts service would say. */
const offer = (nftId = "nft_1", owner = "bob", price = "100") => ({
  nft: { id: nftId, collectionId: "col_1", ownerId: owner },
  priceTokenId: "tok_1",
  price,
});
const listings = () => db.store<ListingDoc>("listings");
const outboxDocs = () => db.store<OutboxDoc>("outbox");

/** A new process on the same database: a new book and outbox, nothing to recover. */
function restart(): void {
  // Into this test's list, not a later test's: an outbox may still flush after its test.
  outbox = outboxInto(db, published);
  book = new MarketBook(db, outbox);
}

beforeEach(() => {
  db = SqliteDatabase.open({ ...MARKET_COLLECTIONS, outbox: {} });
  published = [];
  restart();
});

describe("listings", () => {
  it("lists only for its owner (403) and above 0 (400), storing nothing otherwise", async () => {
    await expect(book.list("carol", "k1", offer("nft_1", "bob"))).rejects.toMatchObject({
      code: 403,
      type: "FORBIDDEN",
    });
    await expect(book.list("bob", "k2", offer("nft_1", "bob", "0"))).rejects.toMatchObject({
      code: 400,
      data: [{ field: "price" }],
    });
    expect((await book.find({}, 10, 0)).total).toBe(0);
    expect(published).toEqual([]);
  });

  it("lists an NFT once: a second listing of it is refused, also when both race", async () => {
    const l = await book.list("bob", "k1", offer());
    expect(l).toMatchObject({ nftId: "nft_1", sellerId: "bob", state: "active", price: "100" });
    expect(await book.list("bob", "k1", offer())).toEqual(l); // the same call again
    await expect(book.list("bob", "k2", offer())).rejects.toMatchObject({ code: 409 });
    const race = await Promise.allSettled([
      book.list("carol", "r1", offer("nft_2", "carol")),
      book.list("carol", "r2", offer("nft_2", "carol")),
    ]);
    expect(race.filter(r => r.status === "fulfilled")).toHaveLength(1);
    expect(race.filter(r => r.status === "rejected")[0]).toMatchObject({ reason: { code: 409 } });
  });

  it("lets only the seller cancel, and the NFT may be listed again after", async () => {
    const l = await book.list("bob", "k1", offer());
    await expect(book.cancel(l.id, "mallory")).rejects.toMatchObject({ code: 403 });
    expect((await book.cancel(l.id, "bob")).state).toBe("cancelled");
    expect((await book.list("bob", "k2", offer())).state).toBe("active");
  });

  it("holds a reserved listing for its saga: not buyable by another, back to active when undone", async () => {
    const l = await book.list("bob", "k1", offer());
    await expect(book.reserve(l.id, "s0", "bob")).rejects.toMatchObject({ code: 403 });
    expect((await book.reserve(l.id, "s1", "carol")).state).toBe("reserved");
    expect((await book.reserve(l.id, "s1", "carol")).state).toBe("reserved"); // a repeat
    await expect(book.reserve(l.id, "s2", "dave")).rejects.toMatchObject({ code: 409 });
    await expect(book.cancel(l.id, "bob")).rejects.toMatchObject({ code: 409 });
    expect((await book.release(l.id, "s1")).state).toBe("active");
    expect((await book.reserve(l.id, "s2", "dave")).state).toBe("reserved");
    expect((await book.sell(l.id, "s2")).state).toBe("sold");
    expect((await book.sell(l.id, "s2")).state).toBe("sold"); // a repeat
    expect((await book.list("dave", "k3", offer("nft_1", "dave"))).sellerId).toBe("dave");
  });

  it("cancels an active listing whose NFT moved away, not one a sale holds", async () => {
    const a = await book.list("bob", "k1", offer("nft_a"));
    const b = await book.list("bob", "k2", offer("nft_b"));
    await book.reserve(b.id, "s1", "carol");
    expect(await book.nftMoved("nft_a", "erin")).toBe(1);
    expect(await book.nftMoved("nft_b", "carol")).toBe(0);
    expect((await book.get(a.id)).state).toBe("cancelled");
    expect((await book.get(b.id)).state).toBe("reserved");
  });

  it("publishes market.listed, sold and cancelled", async () => {
    const l = await book.list("bob", "k1", offer());
    await book.reserve(l.id, "s1", "carol");
    await book.sell(l.id, "s1");
    const c = await book.list("carol", "k2", offer("nft_1", "carol"));
    await book.cancel(c.id, "carol");
    await outbox.flush();
    expect(published.map(e => e.type)).toEqual([
      "market.listed",
      "market.sold",
      "market.listed",
      "market.cancelled",
    ]);
    expect(published[1].data).toMatchObject({ buyerId: "carol", listing: { state: "sold" } });
  });
});

describe("a listing's change is one transaction", () => {
  async function crashOnce(collection: string, method: Parameters<typeof failInTransaction>[2]) {
    await outbox.flush();
    const before = await listings().find({}, { sort: { _id: 1 } });
    const crash = failInTransaction(db, collection, method);
    // The change fails at the crash, and leaves the listings as they were and no event.
    return {
      judge: async (change: Promise<unknown>) => {
        await expect(change).rejects.toThrow(/crash point/);
        expect(crash.fired()).toBe(true);
        expect(await listings().find({}, { sort: { _id: 1 } })).toEqual(before);
        expect(await outboxDocs().count({})).toBe(0);
        restart();
      },
    };
  }

  const sent = async () => {
    await outbox.flush();
    return published.map(e => e.type);
  };

  atEachWrite(
    [
      ["the listing", "listings", "insert"],
      ["the event", "outbox", "insertMany"],
    ],
    what => `a crash at ${what} of a listing lists nothing; the retry of its key lists once`,
    async (collection, method) => {
      const { judge } = await crashOnce(collection, method);
      await judge(book.list("bob", "k1", offer()));
      const l = await book.list("bob", "k1", offer());
      expect(await book.list("bob", "k1", offer())).toEqual(l);
      expect(await listings().count({})).toBe(1);
      expect(await sent()).toEqual(["market.listed"]);
    },
  );

  // A cancel and a sale each write the listing, then the event; a repeat answers it again.
  const changes = [
    { name: "cancel", was: "active", to: "cancelled", run: (id: string) => book.cancel(id, "bob") },
    { name: "sale", was: "reserved", to: "sold", run: (id: string) => book.sell(id, "s1") },
  ] as const;
  for (const c of changes)
    atEachWrite(
      [
        ["the listing", "listings", "updateOne"],
        ["the event", "outbox", "insertMany"],
      ],
      what => `a crash at ${what} of a ${c.name} leaves it ${c.was}; the repeat makes it once`,
      async (collection, method) => {
        const l = await book.list("bob", "k1", offer());
        if (c.was === "reserved") await book.reserve(l.id, "s1", "carol");
        const { judge } = await crashOnce(collection, method);
        await judge(c.run(l.id));
        expect((await c.run(l.id)).state).toBe(c.to);
        expect((await c.run(l.id)).state).toBe(c.to);
        expect(await sent()).toEqual(["market.listed", `market.${c.to}`]);
      },
    );

  it("a crash while cancelling the listing of a moved NFT cancels nothing; the redelivery once", async () => {
    await book.list("bob", "k1", offer("nft_a"));
    const { judge } = await crashOnce("outbox", "insertMany");
    await judge(book.nftMoved("nft_a", "erin"));
    expect(await book.nftMoved("nft_a", "erin")).toBe(1);
    expect(await book.nftMoved("nft_a", "erin")).toBe(0);
    expect(await sent()).toEqual(["market.listed", "market.cancelled"]);
  });
});

describe("expiring listings", () => {
  const until = (ms: number) => ({
    ...offer(),
    expiresAt: new Date(Date.now() + ms).toISOString(),
  });
  const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

  it("reads a lapsed listing as expired before anything writes it, and refuses to reserve it", async () => {
    const l = await book.list("bob", "k1", until(30));
    await sleep(40);
    expect(await book.get(l.id)).toMatchObject({ state: "expired" });
    expect((await listings().findOne({ _id: l.id }))!.state).toBe("active"); // not written yet
    await expect(book.reserve(l.id, "sag_1", "carol")).rejects.toMatchObject({ code: 409 });
    expect((await book.find({ state: "active" }, 10, 0)).total).toBe(0);
    expect((await book.find({ state: "expired" }, 10, 0)).rows.map(r => r.id)).toEqual([l.id]);
  });

  it("a new listing of the NFT expires the lapsed one in its own transaction, with its event", async () => {
    const l = await book.list("bob", "k1", until(30));
    await sleep(40);
    const again = await book.list("bob", "k2", offer());
    expect(again.state).toBe("active");
    expect((await listings().findOne({ _id: l.id }))!).toMatchObject({ state: "expired" });
    expect((await listings().findOne({ _id: l.id }))!).not.toHaveProperty("liveNftId");
    await outbox.flush();
    expect(published.map(e => e.type)).toEqual([
      "market.listed",
      "market.expired",
      "market.listed",
    ]);
  });

  it("expireDue writes each lapsed listing once, with one market.expired event, and leaves the rest", async () => {
    const lapsed = await book.list("bob", "k1", until(30));
    const later = await book.list("bob", "k2", {
      ...until(60_000),
      nft: { ...offer().nft, id: "nft_2" },
    });
    const forever = await book.list("bob", "k3", {
      ...offer(),
      nft: { ...offer().nft, id: "nft_3" },
    });
    await sleep(40);
    const [a, b] = await Promise.all([book.expireDue(), book.expireDue()]); // two replicas
    expect(a + b).toBe(1);
    expect(await book.expireDue()).toBe(0);
    expect((await book.get(lapsed.id)).state).toBe("expired");
    expect((await book.get(later.id)).state).toBe("active");
    expect((await book.get(forever.id)).expiresAt).toBeNull();
    await outbox.flush();
    expect(published.filter(e => e.type === "market.expired")).toHaveLength(1);
  });

  it("a listing reserved before its expiry is sold after it; one released after it is expired", async () => {
    const sold = await book.list("bob", "k1", until(40));
    const undone = await book.list("bob", "k2", {
      ...until(40),
      nft: { ...offer().nft, id: "nft_2" },
    });
    await book.reserve(sold.id, "sag_1", "carol");
    await book.reserve(undone.id, "sag_2", "carol");
    await sleep(50);
    expect(await book.expireDue()).toBe(0);
    expect((await book.sell(sold.id, "sag_1")).state).toBe("sold");
    expect((await book.release(undone.id, "sag_2")).state).toBe("expired");
    expect(await book.expireDue()).toBe(1);
  });

  it("refuses an expiresAt that is not a date, in the past, or more than a year ahead (400)", async () => {
    for (const expiresAt of [
      "soon",
      new Date(Date.now() - 1).toISOString(),
      new Date(Date.now() + 400 * 86_400_000).toISOString(),
    ])
      await expect(
        book.list("bob", `k-${expiresAt}`, { ...offer(), expiresAt }),
      ).rejects.toMatchObject({
        code: 400,
        data: [{ field: "expiresAt" }],
      });
  });
});
