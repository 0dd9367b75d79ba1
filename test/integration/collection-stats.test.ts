import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type Registered } from "../helpers/http";
import { createToken } from "../helpers/tokens";
import { waitUntil } from "../helpers/cluster";
import { expectEscrowBalanced } from "../helpers/escrow";
import type { Listing } from "../../lib/events/market";
import type { Collection, Nft } from "../../lib/events/nfts";
import type { CollectionStats } from "../../lib/read-models/nft-views";

/**
 * A collection's figures from the catalog's read model of NFTs and listings (docs/api.md
 * "Marketplace"): stats, traits with counts, NFTs filtered by traits and sorted by price,
 * over the real gateway, nfts, market, sagas and catalog in one process.
 */

const SERVICES = ["api", "users", "tokens", "nfts", "market", "sagas", "catalog"];
const ENV = {
  READY_SERVICES: "users,tokens,nfts,market,sagas,catalog",
  RATE_LIMIT_MAX: "0",
  MARKET_EXPIRY_INTERVAL_MS: "100",
};
type List<T> = { rows: T[]; total: number };

describe("collection stats, traits and NFT search", () => {
  let p: Platform;
  let ann: Registered; // the collection's owner (royalty 10 %)
  let bob: Registered; // holds NFTs and lists them
  let cat: Registered; // buys
  let tok: string;
  let col: Collection;
  const nfts: Nft[] = [];
  const TRAITS = [
    { Background: "Blue", Eyes: "Red" },
    { Background: "Blue", Eyes: "Green" },
    { Background: "Gold", Eyes: "Red" },
    { Background: "Blue", "Eyes.Left": "x" }, // a trait_type with a dot
  ];

  beforeAll(async () => {
    p = await startPlatform(SERVICES, ENV);
    [ann, bob, cat] = await Promise.all(["ann", "bob", "cat"].map(n => registerUser(p.client, n)));
    tok = (await createToken(p.client, cat.token, { decimals: 0, initialSupply: "1000000" })).id;
    const c = await p.client.post<Collection>(
      "/api/collections",
      { name: "Cats", symbol: "CAT", royaltyBps: 1000 },
      { token: ann.token },
    );
    col = c.body;
    for (const [i, t] of TRAITS.entries()) {
      const attributes = Object.entries(t).map(([trait_type, value]) => ({ trait_type, value }));
      const n = await p.client.post<Nft>(
        `/api/collections/${col.id}/nfts`,
        { to: i < 3 ? bob.id : ann.id, metadata: { name: `Cat ${i + 1}`, attributes } },
        { token: ann.token },
      );
      expect(n.status, n.text).toBe(201);
      nfts.push(n.body);
    }
  });
  afterAll(() => p.stop());
  // Its sales go through the escrow: it holds what the market says it does.
  afterEach(() => expectEscrowBalanced(p, [tok]));

  const stats = async () =>
    (await p.client.get<CollectionStats>(`/api/collections/${col.id}/stats`)).body;
  const list = async (nft: Nft, price: string) => {
    const res = await p.client.post<Listing>(
      "/api/market/listings",
      { nftId: nft.id, priceTokenId: tok, price },
      { token: bob.token },
    );
    expect(res.status, res.text).toBe(201);
    return res.body;
  };

  it("counts the supply, owners and traits of what was minted", async () => {
    await waitUntil(async () => (await stats()).supply === 4, 5000);
    expect(await stats()).toMatchObject({
      collectionId: col.id,
      supply: 4,
      owners: 2,
      listed: 0,
      floor: {},
      sales: { "1d": 0, "7d": 0, "30d": 0, all: 0 },
    });
    const traits = await p.client.get(`/api/collections/${col.id}/traits`);
    expect(traits.status).toBe(200);
    expect(traits.body).toEqual({
      Background: { Blue: 3, Gold: 1 },
      Eyes: { Red: 2, Green: 1 },
      "Eyes.Left": { x: 1 },
    });
    expect((await p.client.get("/api/collections/col_nope/stats")).status).toBe(404);
    expect((await p.client.get("/api/collections/col_nope/traits")).status).toBe(404);
  });

  it("finds NFTs by traits (all must match) and sorts them by serial", async () => {
    const q = (query: string) => p.client.get<List<Nft>>(`/api/nfts?collection=${col.id}&${query}`);
    const blue = await q("traits[Background]=Blue&sort=serial");
    expect(blue.status, blue.text).toBe(200);
    expect(blue.body.rows.map(n => n.serial)).toEqual([1, 2, 4]);
    expect(blue.body.total).toBe(3);
    const blueRed = await q("traits[Background]=Blue&traits[Eyes]=Red");
    expect(blueRed.body.rows.map(n => n.id)).toEqual([nfts[0].id]);
    expect((await q("traits[Eyes.Left]=x")).body.rows.map(n => n.id)).toEqual([nfts[3].id]);
    expect((await q("traits[Background]=Pink")).body).toEqual({ rows: [], total: 0 });
    // Answered as the nfts service has them: whole NFTs, owners exact.
    expect(blueRed.body.rows[0]).toEqual(nfts[0]);
    expect((await q("sort=serial")).body.rows.map(n => n.serial)).toEqual([1, 2, 3, 4]);
    expect((await q("sort=cheap")).status).toBe(400);
  });

  it("floor per price token, listed count, price order; a sale's volume in every window", async () => {
    await list(nfts[0], "300");
    const second = await list(nfts[1], "100");
    await list(nfts[2], "200");
    await waitUntil(async () => (await stats()).listed === 3, 5000);
    expect((await stats()).floor).toEqual({ [tok]: "100" });
    const byPrice = await p.client.get<List<Nft>>(`/api/nfts?collection=${col.id}&sort=price`);
    // Cheapest first, the unlisted NFT last.
    expect(byPrice.body.rows.map(n => n.serial)).toEqual([2, 3, 1, 4]);

    const bought = await p.client.post(`/api/market/listings/${second.id}/buy`, undefined, {
      token: cat.token,
    });
    expect(bought.status, bought.text).toBe(201);
    await waitUntil(async () => (await stats()).sales.all === 1, 5000);
    const s = await stats();
    expect(s).toMatchObject({ supply: 4, owners: 3, listed: 2, floor: { [tok]: "200" } });
    for (const w of ["1d", "7d", "30d", "all"] as const) {
      expect(s.volume[w]).toEqual({ [tok]: "100" });
      expect(s.sales[w]).toBe(1);
    }
    const catOwns = await p.client.get<List<Nft>>(
      `/api/nfts?collection=${col.id}&owner=${cat.id}&traits[Background]=Blue`,
    );
    await waitUntil(
      async () =>
        (
          await p.client.get<List<Nft>>(
            `/api/nfts?collection=${col.id}&owner=${cat.id}&traits[Background]=Blue`,
          )
        ).body.total === 1,
      5000,
    );
    expect(catOwns.status).toBe(200);
  });

  it("a lapsed listing leaves the floor at once", async () => {
    const res = await p.client.post<Listing>(
      "/api/market/listings",
      {
        nftId: nfts[3].id,
        priceTokenId: tok,
        price: "5",
        expiresAt: new Date(Date.now() + 600).toISOString(),
      },
      { token: ann.token },
    );
    expect(res.status, res.text).toBe(201);
    await waitUntil(async () => (await stats()).floor[tok] === "5", 5000);
    await new Promise(r => setTimeout(r, Date.parse(res.body.expiresAt!) - Date.now() + 10));
    expect((await stats()).floor).toEqual({ [tok]: "200" });
  });
});
