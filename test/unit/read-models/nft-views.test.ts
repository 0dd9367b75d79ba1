import { beforeEach, describe, expect, it } from "vitest";
import {
  NFT_VIEW_COLLECTIONS,
  NftViews,
  nftViewStores,
  WINDOWS,
} from "../../../lib/read-models/nft-views";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import { domainEvent, type DomainEvent } from "../../../lib/events/domain";
import { MARKET_EVENTS, type Listing, type ListingState } from "../../../lib/events/market";
import { NFT_EVENTS, type Nft } from "../../../lib/events/nfts";

/**
 * The catalog's view of NFTs and collections over a real SQLite database in memory: events
 * in any order across channels give the same figures.
 */

let views: NftViews;
let n = 0;

const nft = (serial: number, ownerId: string, traits: Record<string, string> = {}): Nft => ({
  id: `nft_${serial}`,
  collectionId: "col_1",
  serial,
  ownerId,
  approved: null,
  metadata: {
    name: `#${serial}`,
    attributes: Object.entries(traits).map(([trait_type, value]) => ({ trait_type, value })),
  },
  mintedAt: new Date(Date.UTC(2026, 0, serial)).toISOString(),
});
const minted = (x: Nft) => domainEvent(NFT_EVENTS.minted, x.id, { nft: x });
const moved = (id: string, from: string, to: string, version: number) =>
  domainEvent(NFT_EVENTS.transferred, `${id}:${version}`, {
    nftId: id,
    collectionId: "col_1",
    from,
    to,
    version,
  });
const listing = (id: string, nftId: string, price: string, state: ListingState): Listing => ({
  id,
  nftId,
  collectionId: "col_1",
  sellerId: "bob",
  priceTokenId: "tok_1",
  price,
  state,
  expiresAt: null,
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-01T00:00:00.000Z",
});
const market = (type: string, l: Listing, occurredAt?: string): DomainEvent => ({
  ...domainEvent(type as typeof MARKET_EVENTS.listed, `${l.id}:${++n}`, { listing: l }),
  ...(occurredAt ? { occurredAt } : {}),
});

beforeEach(() => {
  views = new NftViews(nftViewStores(SqliteDatabase.open(NFT_VIEW_COLLECTIONS)));
});

describe("NFT views", () => {
  it("a transfer that comes before its mint: one NFT, counted once, owned by the mover's target", async () => {
    const a = nft(1, "ann", { Eyes: "Red" });
    await views.apply([moved(a.id, "ann", "bob", 2), minted(a), moved(a.id, "ann", "bob", 2)]);
    const s = await views.stats("col_1");
    expect(s).toMatchObject({ supply: 1, owners: 1 });
    expect(await views.find({ owner: "bob", sort: "serial", limit: 10, offset: 0 })).toEqual({
      ids: [a.id],
      total: 1,
    });
    expect(await views.traits("col_1")).toEqual({ Eyes: { Red: 1 } });
  });

  it("an older move arriving late changes nothing", async () => {
    const a = nft(1, "ann");
    await views.apply([minted(a), moved(a.id, "bob", "cat", 3), moved(a.id, "ann", "bob", 2)]);
    expect((await views.find({ owner: "cat", sort: "serial", limit: 10, offset: 0 })).ids).toEqual([
      a.id,
    ]);
    expect((await views.stats("col_1")).owners).toBe(1);
  });

  it("a listing's end is final: listed after cancelled leaves it unlisted", async () => {
    const a = nft(1, "bob");
    await views.apply([
      minted(a),
      market(MARKET_EVENTS.cancelled, listing("lst_1", a.id, "10", "cancelled")),
      market(MARKET_EVENTS.listed, listing("lst_1", a.id, "10", "active")),
    ]);
    expect(await views.stats("col_1")).toMatchObject({ listed: 0, floor: {} });
  });

  it("a listing seen before the mint prices the NFT once it is minted", async () => {
    const a = nft(1, "bob");
    const b = nft(2, "bob");
    await views.apply([
      market(MARKET_EVENTS.listed, listing("lst_1", a.id, "20", "active")),
      minted(a),
      minted(b),
      market(MARKET_EVENTS.listed, listing("lst_2", b.id, "3", "active")),
    ]);
    const cheapest = await views.find({ sort: "price", limit: 10, offset: 0 });
    expect(cheapest.ids).toEqual([b.id, a.id]);
    expect((await views.stats("col_1")).floor).toEqual({ tok_1: "3" });
  });

  it("sums volume per window from when each sale happened, and all-time beyond 30 days", async () => {
    const a = nft(1, "bob");
    const now = Date.now();
    const ago = (ms: number) => new Date(now - ms).toISOString();
    await views.apply([
      minted(a),
      market(MARKET_EVENTS.sold, listing("lst_1", a.id, "5", "sold"), ago(3600_000)),
      market(MARKET_EVENTS.sold, listing("lst_2", a.id, "7", "sold"), ago(3 * WINDOWS["1d"])),
      market(MARKET_EVENTS.sold, listing("lst_3", a.id, "11", "sold"), ago(10 * WINDOWS["1d"])),
      market(MARKET_EVENTS.sold, listing("lst_4", a.id, "13", "sold"), ago(40 * WINDOWS["1d"])),
    ]);
    const s = await views.stats("col_1", now);
    expect(s.volume).toEqual({
      "1d": { tok_1: "5" },
      "7d": { tok_1: "12" },
      "30d": { tok_1: "23" },
      all: { tok_1: "36" },
    });
    expect(s.sales).toEqual({ "1d": 1, "7d": 2, "30d": 3, all: 4 });
    expect(await views.pruneSales(now)).toBe(1);
    expect((await views.stats("col_1", now)).volume.all).toEqual({ tok_1: "36" });
  });
});
