import { beforeEach, describe, expect, it } from "vitest";
import { MARKET_COLLECTIONS, MarketBook, type ListingDoc } from "../../../lib/market/market-book";
import { openNedbStore } from "../../../lib/store/nedb/nedb-store";
import { Outbox, type OutboxDoc } from "../../../lib/messaging/outbox";
import type { DomainEvent } from "../../../lib/events/domain";
import { quiet } from "../../helpers/ledger";

/** The marketplace's listings without a broker, over real NeDB stores in memory. */

let book: MarketBook;
let outbox: Outbox;
let published: DomainEvent[];
/** A listing of `nftId`, owned by `owner` as the nfts service would say. */
const offer = (nftId = "nft_1", owner = "bob", price = "100") => ({
  nft: { id: nftId, collectionId: "col_1", ownerId: owner },
  priceTokenId: "tok_1",
  price,
});

beforeEach(async () => {
  published = [];
  outbox = new Outbox(
    await openNedbStore<OutboxDoc>("outbox", {}),
    { ready: () => true, publish: async (_t, e) => void published.push(e) },
    quiet,
  );
  book = new MarketBook(
    await openNedbStore<ListingDoc>("listings", MARKET_COLLECTIONS.listings),
    outbox,
  );
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
