import { beforeEach, describe, expect, it } from "vitest";
import { MARKET_COLLECTIONS, MarketBook, type ListingDoc } from "../../../lib/market/market-book";
import { OFFER_COLLECTIONS, OfferBook, type NewOffer } from "../../../lib/market/offer-book";
import {
  AUCTION_COLLECTIONS,
  AuctionBook,
  type NewAuction,
} from "../../../lib/market/auction-book";
import { MarketRetention } from "../../../lib/market/market-retention";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import type { Nft } from "../../../lib/events/nfts";
import type { DomainEvent } from "../../../lib/events/domain";
import type { Database, Doc } from "../../../lib/store/store";
import { outboxInto } from "../../helpers/stores";

/**
 * The market's retention over a real SQLite database in memory: ended listings, offers and
 * auctions (with their bids) go once their end is past the retention; those ended within
 * it and every running one stay; documents from before `endedAt` count from their last
 * write; an NFT whose listing was pruned is listed and sold again.
 */

let db: Database;
let listings: MarketBook;
let offers: OfferBook;
let auctions: AuctionBook;

const MINUTE = 60_000;
const later = () => new Date(Date.now() + MINUTE);
const earlier = () => new Date(Date.now() - MINUTE);
const ids = async (name: string) =>
  (await db.store(name).find({}, { sort: { _id: 1 } })).map(d => d._id);

const listing = (nftId: string, owner = "bob") => ({
  nft: { id: nftId, collectionId: "col_1", ownerId: owner },
  priceTokenId: "tok_1",
  price: "100",
});
const nft = (id: string, owner: string): Nft => ({
  id,
  collectionId: "col_1",
  serial: 1,
  ownerId: owner,
  approved: null,
  metadata: { name: id },
  mintedAt: new Date().toISOString(),
});
const offerTerms = (nftId: string | null): NewOffer => ({
  nftId,
  collectionId: "col_1",
  traits: [],
  priceTokenId: "tok_1",
  price: "50",
});
const auctionTerms = (nftId: string): NewAuction => ({
  nftId,
  collectionId: "col_1",
  sellerId: "bob",
  priceTokenId: "tok_1",
  reservePrice: "100",
  minIncrementBps: 500,
  endsAt: new Date(Date.now() + MINUTE).toISOString(),
  royaltyBps: 0,
  royaltyTo: "ann",
});
const pastEnd = (id: string) =>
  db.store("auctions").updateOne({ _id: id }, { $set: { endsAt: new Date().toISOString() } });

/** One of each: ended (every way a document ends) and running. */
async function market() {
  // Listings: sold, cancelled, expired; active and reserved.
  const sold = await listings.list("bob", "l1", listing("nft_sold"));
  await listings.reserve(sold.id, "s1", "carol");
  await listings.sell(sold.id, "s1");
  const cancelled = await listings.list("bob", "l2", listing("nft_cancelled"));
  await listings.cancel(cancelled.id, "bob");
  const expired = await listings.list("bob", "l3", {
    ...listing("nft_expired"),
    expiresAt: new Date(Date.now() + MINUTE).toISOString(),
  });
  await db
    .store<ListingDoc>("listings")
    .updateOne({ _id: expired.id }, { $set: { expiresAt: new Date().toISOString() } });
  expect(await listings.expireDue()).toBe(1);
  await listings.list("bob", "l4", listing("nft_active"));
  const reserved = await listings.list("bob", "l5", listing("nft_reserved"));
  await listings.reserve(reserved.id, "s5", "carol");

  // Offers: accepted, cancelled; active, accepting and pending.
  for (const n of ["accepted", "cancelled", "active", "accepting", "pending"]) {
    await offers.create(`off_${n}`, "carol", `os_${n}`, offerTerms(`nft_o_${n}`));
    if (n !== "pending") await offers.activate(`off_${n}`, `os_${n}`);
  }
  await offers.reserve("off_accepted", "oa", nft("nft_o_accepted", "bob"), "bob");
  await offers.accept("off_accepted", "oa", "0", "ann");
  await offers.close("off_cancelled", "oc", "cancelled", "carol");
  await offers.reserve("off_accepting", "ob", nft("nft_o_accepting", "bob"), "bob");

  // Auctions: settled (with bids), unsold, cancelled; active with a bid, and pending.
  for (const n of ["settled", "unsold", "cancelled", "active"]) {
    await auctions.create(`auc_${n}`, `as_${n}`, auctionTerms(`nft_a_${n}`));
    await auctions.activate(`auc_${n}`, `as_${n}`);
  }
  await auctions.create("auc_pending", "as_pending", auctionTerms("nft_a_pending"));
  await auctions.place("auc_settled", "bid_s1", "bs1", "carol", "100");
  await auctions.place("auc_settled", "bid_s2", "bs2", "dave", "200");
  await auctions.place("auc_active", "bid_a1", "ba1", "carol", "100");
  for (const n of ["settled", "unsold"]) {
    await pastEnd(`auc_${n}`);
    await auctions.close(`auc_${n}`, `end_${n}`);
    await auctions.finish(`auc_${n}`, `end_${n}`);
  }
  await auctions.cancel("auc_cancelled", "cs", "bob");
  return { sold, cancelled, expired };
}

beforeEach(() => {
  db = SqliteDatabase.open({
    ...MARKET_COLLECTIONS,
    ...OFFER_COLLECTIONS,
    ...AUCTION_COLLECTIONS,
    outbox: {},
  });
  const published: DomainEvent[] = [];
  const outbox = outboxInto(db, published);
  listings = new MarketBook(db, outbox);
  offers = new OfferBook(db, outbox);
  auctions = new AuctionBook(db, outbox, 1000);
});

describe("market retention", () => {
  it("every end records when it was; a running document has no end", async () => {
    await market();
    const ended = async (name: string) =>
      Object.fromEntries(
        (await db.store<Doc>(name).find({})).map(d => [d.state, typeof d.endedAt === "string"]),
      );
    expect(await ended("listings")).toEqual({
      sold: true,
      cancelled: true,
      expired: true,
      active: false,
      reserved: false,
    });
    expect(await ended("offers")).toEqual({
      accepted: true,
      cancelled: true,
      active: false,
      accepting: false,
      pending: false,
    });
    expect(await ended("auctions")).toEqual({
      settled: true,
      unsold: true,
      cancelled: true,
      active: false,
      pending: false,
    });
  });

  it("removes the ended ones past the retention, with their bids; keeps the running ones", async () => {
    await market();
    const before = {
      listings: await ids("listings"),
      offers: await ids("offers"),
      auctions: await ids("auctions"),
      bids: await ids("bids"),
    };
    const retention = new MarketRetention(db, 2);
    // Ended within the retention: kept.
    expect(await retention.prune(earlier())).toEqual({
      listings: 0,
      offers: 0,
      auctions: 0,
      bids: 0,
    });
    expect(await ids("listings")).toEqual(before.listings);
    expect(await ids("bids")).toEqual(before.bids);

    // Ended before the cutoff: gone, in windows of 2.
    expect(await retention.prune(later())).toEqual({
      listings: 3,
      offers: 2,
      auctions: 3,
      bids: 2,
    });
    const states = async (name: string) =>
      (await db.store<Doc>(name).find({})).map(d => d.state).sort();
    expect(await states("listings")).toEqual(["active", "reserved"]);
    expect(await states("offers")).toEqual(["accepting", "active", "pending"]);
    expect(await states("auctions")).toEqual(["active", "pending"]);
    expect(await ids("bids")).toEqual(["bid_a1"]);
    // Nothing left to prune: a second run removes nothing.
    expect(Object.values(await retention.prune(later()))).toEqual([0, 0, 0, 0]);
  });

  it("an offer closed and then reopened (its close undone) is live again: kept", async () => {
    await offers.create("off_1", "carol", "os", offerTerms(null));
    await offers.activate("off_1", "os");
    await offers.close("off_1", "oc", "cancelled", "carol");
    await offers.reopen("off_1", "oc");
    expect((await db.store<Doc>("offers").findOne({ _id: "off_1" }))?.endedAt).toBeUndefined();
    await new MarketRetention(db).prune(later());
    expect((await offers.get("off_1")).state).toBe("active");
  });

  it("documents ended before endedAt existed count from their last write", async () => {
    const { sold, cancelled } = await market();
    const old = new Date(Date.now() - 40 * 24 * 3600_000).toISOString();
    const docs = db.store<ListingDoc>("listings");
    // As an older version wrote them: no endedAt; one ended long ago, one just now.
    await docs.updateOne({ _id: sold.id }, { $unset: { endedAt: true }, $set: { updatedAt: old } });
    await docs.updateOne({ _id: cancelled.id }, { $unset: { endedAt: true } });
    await db.store("auctions").update({}, { $unset: { endedAt: true } });
    const pruned = await new MarketRetention(db).prune(new Date(Date.now() - 30 * 24 * 3600_000));
    expect(pruned.listings).toBe(1);
    expect(await docs.findOne({ _id: sold.id })).toBeNull();
    expect((await docs.findOne({ _id: cancelled.id }))?.endedAt).toEqual(expect.any(String));
    // The undated ended auctions are dated; the running ones are not.
    const dated = (await db.store<Doc>("auctions").find({ endedAt: { $exists: true } })).map(
      d => d.state,
    );
    expect(dated.sort()).toEqual(["cancelled", "settled", "unsold"]);
  });

  it("an NFT whose listing was pruned is listed and sold again", async () => {
    const { sold } = await market();
    await new MarketRetention(db).prune(later());
    await expect(listings.get(sold.id)).rejects.toMatchObject({ code: 404 });
    // Carol bought it; she lists it, and dave buys it from her.
    const again = await listings.list("carol", "l9", listing("nft_sold", "carol"));
    expect(again.state).toBe("active");
    await listings.reserve(again.id, "s9", "dave");
    expect((await listings.sell(again.id, "s9")).state).toBe("sold");
    // And so is one whose auction was pruned: it may be auctioned again.
    await auctions.create("auc_again", "as_again", auctionTerms("nft_a_settled"));
    expect((await auctions.activate("auc_again", "as_again")).state).toBe("active");
  });
});
