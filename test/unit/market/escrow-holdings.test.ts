import { beforeEach, describe, expect, it } from "vitest";
import { EscrowView, opsStatsOf } from "../../../lib/market/escrow-holdings";
import { MARKET_COLLECTIONS } from "../../../lib/market/market-book";
import { OFFER_COLLECTIONS } from "../../../lib/market/offer-book";
import { AUCTION_COLLECTIONS } from "../../../lib/market/auction-book";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import type { Database } from "../../../lib/store/store";

/**
 * What the operator page says the escrow should hold (lib/market/escrow-holdings.ts), over
 * a real SQLite database in memory: which states hold money, the sums per price token,
 * the bounds (documents read, tokens shown) and the auctions ending soonest.
 */

let db: Database;
const at = (ms: number) => new Date(Date.parse("2030-01-01T00:00:00Z") + ms).toISOString();

beforeEach(async () => {
  db = SqliteDatabase.open({ ...MARKET_COLLECTIONS, ...OFFER_COLLECTIONS, ...AUCTION_COLLECTIONS });
  const offers = db.store("offers");
  const auctions = db.store("auctions");
  const listings = db.store("listings");
  // Held: active and accepting offers, running and settling auctions' highest bids, reserved listings.
  await offers.insert({ _id: "o1", state: "active", priceTokenId: "tA", price: "300" });
  await offers.insert({ _id: "o2", state: "accepting", priceTokenId: "tA", price: "200" });
  await offers.insert({ _id: "o3", state: "active", priceTokenId: "tB", price: "7" });
  for (const state of ["pending", "accepted", "cancelled", "expired"])
    await offers.insert({ _id: `o_${state}`, state, priceTokenId: "tA", price: "1000" });
  const bid = (amount: string) => ({ bidId: `b${amount}`, bidderId: "cat", amount });
  const auction = (id: string, state: string, endsAt: string, amount: string | null) =>
    auctions.insert({
      _id: id,
      state,
      nftId: `nft_${id}`,
      collectionId: "col",
      priceTokenId: "tA",
      endsAt,
      highestBid: amount === null ? null : bid(amount),
    });
  await auction("a1", "active", at(3000), "150");
  await auction("a2", "settling", at(1000), "50");
  await auction("a3", "active", at(2000), null);
  await auction("a4", "settled", at(0), "999");
  await auction("a5", "pending", at(500), null);
  await listings.insert({ _id: "l1", state: "reserved", priceTokenId: "tB", price: "40" });
  await listings.insert({ _id: "l2", state: "active", priceTokenId: "tB", price: "4000" });
  await listings.insert({ _id: "l3", state: "sold", priceTokenId: "tB", price: "4000" });
});

describe("the escrow's holdings", () => {
  it("sums what each price token holds, largest first, and counts each kind", async () => {
    const h = await new EscrowView(db).holdings(["tC"]);
    expect(h).toEqual({
      tokens: [
        { tokenId: "tA", offers: "500", bids: "200", purchases: "0", held: "700" },
        { tokenId: "tB", offers: "7", bids: "0", purchases: "40", held: "47" },
        { tokenId: "tC", offers: "0", bids: "0", purchases: "0", held: "0" },
      ],
      counts: { offers: 3, auctions: 3, purchases: 1 },
      complete: true,
    });
  });

  it("says partial when a kind has more documents than it reads, or more tokens than it shows", async () => {
    expect((await new EscrowView(db, { scan: 2, maxTokens: 20 }).holdings()).complete).toBe(false);
    const few = await new EscrowView(db, { scan: 100, maxTokens: 1 }).holdings();
    expect(few.complete).toBe(false);
    expect(few.tokens.map(t => t.tokenId)).toEqual(["tA"]);
    // A token asked for is shown whatever its size.
    const asked = await new EscrowView(db, { scan: 100, maxTokens: 1 }).holdings(["tC"]);
    expect(asked.tokens.map(t => t.tokenId)).toEqual(["tA", "tC"]);
  });

  it("lists the running auctions by end, soonest first, at most `limit`", async () => {
    const view = new EscrowView(db);
    expect((await view.endingSoon(10)).map(a => [a.id, a.highestBid?.amount ?? null])).toEqual([
      ["a2", "50"],
      ["a3", null],
      ["a1", "150"],
    ]);
    expect(await view.endingSoon(1)).toEqual([
      {
        id: "a2",
        nftId: "nft_a2",
        collectionId: "col",
        priceTokenId: "tA",
        highestBid: { bidderId: "cat", amount: "50" },
        endsAt: at(1000),
      },
    ]);
  });

  it("agrees when every balance equals what is held; unknown when a balance is", async () => {
    const h = await new EscrowView(db).holdings();
    const stats = (balances: Array<[string, string | null]>) =>
      opsStatsOf("escrow_market", h, new Map(balances), []).escrow;
    expect(
      stats([
        ["tA", "700"],
        ["tB", "47"],
      ]),
    ).toMatchObject({ agrees: true });
    const off = stats([
      ["tA", "701"],
      ["tB", "47"],
    ]);
    expect(off.agrees).toBe(false);
    expect(off.tokens[0]).toMatchObject({ tokenId: "tA", balance: "701", agrees: false });
    expect(
      stats([
        ["tA", "700"],
        ["tB", null],
      ]).agrees,
    ).toBeNull();
    expect(stats([["tA", "700"]]).tokens[1]).toMatchObject({ balance: null, agrees: null });
  });
});
