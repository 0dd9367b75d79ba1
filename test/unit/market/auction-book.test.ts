import { beforeEach, describe, expect, it } from "vitest";
import {
  AUCTION_COLLECTIONS,
  AuctionBook,
  extendedEnd,
  minimumBid,
  type NewAuction,
} from "../../../lib/market/auction-book";
import { MARKET_COLLECTIONS, MarketBook } from "../../../lib/market/market-book";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import { MARKET_EVENTS } from "../../../lib/events/market";
import type { DomainEvent } from "../../../lib/events/domain";
import type { Database } from "../../../lib/store/store";
import { outboxInto } from "../../helpers/stores";

/**
 * The auctions' rules without a broker, over a real SQLite database in memory: the reserve
 * and the increment, the extension of the end, one live auction per NFT and none while it
 * is listed, a bid racing the end, and the races of bids (each in or refused, each in
 * beating exactly the one before it).
 */

const EXTENSION = 1000;
let db: Database;
let book: AuctionBook;
let published: DomainEvent[];

const terms = (over: Partial<NewAuction> = {}): NewAuction => ({
  nftId: "nft_1",
  collectionId: "col_1",
  sellerId: "bob",
  priceTokenId: "tok_1",
  reservePrice: "100",
  minIncrementBps: 500,
  endsAt: new Date(Date.now() + 60_000).toISOString(),
  royaltyBps: 1000,
  royaltyTo: "ann",
  ...over,
});
const running = async (id = "auc_1", over: Partial<NewAuction> = {}) => {
  await book.create(id, `saga_${id}`, terms(over));
  return book.activate(id, `saga_${id}`);
};
/** Ends the auction now, as if its time had come. */
const pastEnd = (id: string) =>
  db.store("auctions").updateOne({ _id: id }, { $set: { endsAt: new Date().toISOString() } });

beforeEach(() => {
  db = SqliteDatabase.open({ ...MARKET_COLLECTIONS, ...AUCTION_COLLECTIONS, outbox: {} });
  published = [];
  book = new AuctionBook(db, outboxInto(db, published), EXTENSION);
});

describe("auction rules", () => {
  it("the least next bid: the reserve (above 0), then the increment over the highest, rounded up", () => {
    const base = { reservePrice: "100", minIncrementBps: 500, highestBid: null };
    expect(minimumBid(base)).toBe(100n);
    expect(minimumBid({ ...base, reservePrice: "0" })).toBe(1n);
    const high = { bidId: "b", bidderId: "x", amount: "101" };
    expect(minimumBid({ ...base, highestBid: high })).toBe(107n); // 106.05 up
    expect(minimumBid({ ...base, minIncrementBps: 0, highestBid: high })).toBe(102n);
  });

  it("a bid within the extension of the end moves the end; one before it does not", () => {
    const now = Date.parse("2030-01-01T00:00:00.000Z");
    const soon = new Date(now + 400).toISOString();
    const later = new Date(now + 5000).toISOString();
    expect(extendedEnd(soon, now, EXTENSION)).toBe(new Date(now + EXTENSION).toISOString());
    expect(extendedEnd(later, now, EXTENSION)).toBe(later);
  });

  it("refuses a bad end or increment (400) and a second live auction of one NFT (409)", async () => {
    await expect(
      book.create("a0", "s0", terms({ endsAt: "2001-01-01T00:00:00Z" })),
    ).rejects.toMatchObject({ code: 400, data: [{ field: "endsAt" }] });
    await expect(book.create("a0", "s0", terms({ minIncrementBps: 20_000 }))).rejects.toMatchObject(
      { code: 400 },
    );
    await running("auc_1");
    await expect(book.create("auc_2", "s2", terms())).rejects.toMatchObject({ code: 409 });
    expect(await book.liveOn("nft_1")).toBe(true);
  });

  it("refuses to auction a listed NFT (409)", async () => {
    const market = new MarketBook(db, outboxInto(db, published));
    await market.list("bob", "k1", {
      nft: { id: "nft_1", collectionId: "col_1", ownerId: "bob" },
      priceTokenId: "tok_1",
      price: "5",
    });
    await expect(book.create("auc_1", "s1", terms())).rejects.toMatchObject({ code: 409 });
  });

  it("bids: the reserve, the increment, the seller; each in beats the one before", async () => {
    await running();
    await expect(book.place("auc_1", "b0", "s", "cat", "99")).rejects.toMatchObject({
      type: "BID_TOO_LOW",
      code: 422,
    });
    await expect(book.place("auc_1", "b0", "s", "bob", "500")).rejects.toMatchObject({
      code: 403,
    });
    const first = await book.place("auc_1", "b1", "s1", "cat", "100");
    expect(first.beaten).toBeNull();
    expect(first.auction.highestBid).toEqual({ bidderId: "cat", amount: "100" });
    expect(await book.place("auc_1", "b1", "s1", "cat", "100")).toEqual(first); // a repeat
    // A bid's undo pays its escrow back only for a bid that is not in.
    await expect(book.bidAbsent("auc_1", "b1")).rejects.toMatchObject({ code: 409 });
    expect(await book.bidAbsent("auc_1", "b0")).toBeNull();
    await expect(book.place("auc_1", "b2", "s2", "dan", "104")).rejects.toMatchObject({
      type: "BID_TOO_LOW",
    });
    const second = await book.place("auc_1", "b2", "s2", "dan", "105");
    expect(second.beaten).toEqual({ bidId: "b1", bidderId: "cat", amount: "100" });
    await book.refunded("auc_1", "b2");
    await book.refunded("auc_1", "b2"); // told once
    const refunds = () => published.filter(e => e.type === MARKET_EVENTS.bidRefunded);
    await expect.poll(() => refunds().length).toBe(1);
    expect(refunds()[0]!.data).toMatchObject({ bid: { bidderId: "cat", amount: "100" } });
    await expect(book.cancel("auc_1", "sc", "bob")).rejects.toMatchObject({ code: 409 });
  });

  it("a bid near the end moves the end to the extension after it", async () => {
    await running("auc_1", { endsAt: new Date(Date.now() + 300).toISOString() });
    const before = Date.now();
    const placed = await book.place("auc_1", "b1", "s1", "cat", "100");
    expect(Date.parse(placed.auction.endsAt)).toBeGreaterThanOrEqual(before + EXTENSION);
  });

  it("20 bids racing: each in or refused, and those in form one chain of beaten bids", async () => {
    await running("auc_1", { minIncrementBps: 0 });
    const amounts = Array.from({ length: 20 }, (_, i) => 100 + i);
    const tries = await Promise.allSettled(
      amounts.map((a, i) => book.place("auc_1", `b${i}`, `s${i}`, `u${i}`, String(a))),
    );
    const ins = tries.flatMap(t => (t.status === "fulfilled" ? [t.value] : []));
    for (const t of tries)
      if (t.status === "rejected") expect(t.reason).toMatchObject({ type: "BID_TOO_LOW" });
    const top = await book.get("auc_1");
    expect(top.highestBid).toEqual({ bidderId: "u19", amount: "119" });
    // Every bid in but the highest was beaten by exactly one other.
    const beaten = ins.flatMap(p => (p.beaten ? [p.beaten.bidId] : []));
    expect(new Set(beaten).size).toBe(beaten.length);
    expect(beaten.length).toBe(ins.length - 1);
    expect(beaten).not.toContain("b19");
  });

  it("the end racing a last bid: one of them wins", async () => {
    for (let i = 0; i < 10; i++) {
      const id = `auc_${i}`;
      await running(id, { nftId: `nft_${i}` });
      await pastEnd(id);
      const [close, bid] = await Promise.allSettled([
        book.close(id, `end_${i}`),
        book.place(id, `b${i}`, `s${i}`, "cat", "100"),
      ]);
      // Past the end: the bid is refused as ended, the close goes through.
      expect(close.status).toBe("fulfilled");
      expect(bid).toMatchObject({ status: "rejected", reason: { code: 409 } });
      const done = await book.finish(id, `end_${i}`);
      expect(done.state).toBe("unsold");
    }
    // Before the end: the close is refused and the bid is in.
    await running("auc_x", { nftId: "nft_x" });
    const [close, bid] = await Promise.allSettled([
      book.close("auc_x", "end_x"),
      book.place("auc_x", "bx", "sx", "cat", "100"),
    ]);
    expect(close).toMatchObject({ status: "rejected", reason: { code: 409 } });
    expect(bid.status).toBe("fulfilled");
  });

  it("settles to the highest bid with its royalty, once; the NFT may be auctioned again", async () => {
    await running();
    await book.place("auc_1", "b1", "s1", "cat", "1000");
    await pastEnd("auc_1");
    const closing = await book.close("auc_1", "end");
    expect(closing.sale).toEqual({
      winnerId: "cat",
      amount: "1000",
      royalty: "100",
      royaltyTo: "ann",
      sellerShare: "900",
    });
    expect(await book.close("auc_1", "end")).toEqual(closing); // a repeat
    await expect(book.close("auc_1", "other")).rejects.toMatchObject({ code: 409 });
    const done = await book.finish("auc_1", "end");
    expect(done).toMatchObject({ state: "settled", winnerId: "cat" });
    await expect
      .poll(() => published.filter(e => e.type === MARKET_EVENTS.auctionSettled).length)
      .toBe(1);
    expect(await book.liveOn("nft_1")).toBe(false);
    await running("auc_2");
  });
});
