import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type ErrorBody, type Registered } from "../helpers/http";
import { balanceOf, createToken } from "../helpers/tokens";
import { waitUntil } from "../helpers/cluster";
import { expectEscrowBalanced } from "../helpers/escrow";
import { MAX_UINT256 } from "../../lib/shared/amount";
import type { Listing } from "../../lib/events/market";
import type { Collection, Nft } from "../../lib/events/nfts";
import type { AnalyticsSummary } from "../../lib/read-models/read-model";

/**
 * The marketplace over HTTP (docs/api.md "Marketplace"): the real gateway, users, tokens, nfts,
 * market, sagas and analytics in one process, SQLite in memory. A purchase is a saga
 * (lib/sagas/purchase-saga.ts): all or nothing, the royalty floor(price × royaltyBps / 10000)
 * to the collection's owner, the rest to the seller, the NFT to the buyer. After every test
 * the escrow holds exactly what the market says it holds (nothing, once every sale ended).
 */

const SERVICES = ["api", "users", "tokens", "nfts", "market", "sagas", "analytics"];
const ENV = {
  READY_SERVICES: "users,tokens,nfts,market,sagas",
  RATE_LIMIT_MAX: "0",
  MARKET_EXPIRY_INTERVAL_MS: "100",
};

type List<T> = { rows: T[]; total: number };
interface Bought {
  listing: Listing;
  sagaId: string;
}

describe("the marketplace over HTTP", () => {
  let p: Platform;
  let ann: Registered; // collection owner
  let bob: Registered; // seller
  let cat: Registered; // buyer, holds the price token
  let tokenId: string;
  /** Every price token a test used: the escrow balances in each. */
  const used: string[] = [];

  beforeAll(async () => {
    p = await startPlatform(SERVICES, ENV);
    [ann, bob, cat] = await Promise.all(["ann", "bob", "cat"].map(n => registerUser(p.client, n)));
    tokenId = (await createToken(p.client, cat.token, { decimals: 0, initialSupply: "1000000" }))
      .id;
    used.push(tokenId);
  });
  afterAll(() => p.stop());
  afterEach(() => expectEscrowBalanced(p, used));

  /** A collection of Ann's with one NFT minted to `owner`. */
  async function nftOf(owner: Registered, royaltyBps = 250, creator = ann) {
    const c = await p.client.post<Collection>(
      "/api/collections",
      { name: "Art", symbol: "ART", royaltyBps },
      { token: creator.token },
    );
    expect(c.status, c.text).toBe(201);
    const n = await p.client.post<Nft>(
      `/api/collections/${c.body.id}/nfts`,
      { to: owner.id, metadata: { name: "Piece" } },
      { token: creator.token },
    );
    expect(n.status, n.text).toBe(201);
    return n.body;
  }
  const list = (
    who: Registered,
    nftId: string,
    price: string,
    token = tokenId,
    more: { expiresAt?: string } = {},
  ) =>
    p.client.post<Listing>(
      "/api/market/listings",
      { nftId, priceTokenId: token, price, ...more },
      { token: who.token },
    );
  const buy = (who: Registered, listingId: string) =>
    p.client.post<Bought>(`/api/market/listings/${listingId}/buy`, undefined, {
      token: who.token,
    });
  const listed = async (who: Registered, nftId: string, price: string, token = tokenId) => {
    const res = await list(who, nftId, price, token);
    expect(res.status, res.text).toBe(201);
    return res.body;
  };
  const errorType = (res: { body: unknown }) => (res.body as ErrorBody).error.type;
  const give = async (from: Registered, to: Registered, amount: string, token = tokenId) => {
    const res = await p.client.post(
      `/api/tokens/${token}/transfers`,
      { to: to.id, amount },
      { token: from.token },
    );
    expect(res.status, res.text).toBe(201);
  };
  const balances = (token: string, ...who: Registered[]) =>
    Promise.all(who.map(w => balanceOf(p.client, token, w.id)));
  const ownerOf = async (nftId: string) =>
    (await p.client.get<Nft>(`/api/nfts/${nftId}`)).body.ownerId;

  it("lists an NFT its owner holds: 201, readable by anyone, filtered, paged", async () => {
    const nft = await nftOf(bob);
    const res = await list(bob, nft.id, "500");
    expect(res.status).toBe(201);
    expect(res.headers.get("location")).toBe(`/api/market/listings/${res.body.id}`);
    expect(res.body).toMatchObject({
      nftId: nft.id,
      collectionId: nft.collectionId,
      sellerId: bob.id,
      priceTokenId: tokenId,
      price: "500",
      state: "active",
    });
    const got = await p.client.get<Listing>(`/api/market/listings/${res.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(res.body);
    expect((await p.client.get("/api/market/listings/lst_nope")).status).toBe(404);

    const filtered = await p.client.get<List<Listing>>(
      `/api/market/listings?state=active&collection=${nft.collectionId}&seller=${bob.id}`,
    );
    expect(filtered.body).toEqual({ rows: [res.body], total: 1 });
    const none = await p.client.get<List<Listing>>(
      `/api/market/listings?state=sold&collection=${nft.collectionId}`,
    );
    expect(none.body).toEqual({ rows: [], total: 0 });
    const paged = await p.client.get<List<Listing>>(`/api/market/listings?limit=1&offset=0`);
    expect(paged.body.rows).toHaveLength(1);
    expect(paged.body.total).toBeGreaterThanOrEqual(1);
    expect((await p.client.get(`/api/market/listings?state=nope`)).status).toBe(400);
  });

  it("refuses a listing by a non-owner (403), of an unknown NFT or token (404), at a bad price (400)", async () => {
    const nft = await nftOf(bob);
    const notOwner = await list(cat, nft.id, "5");
    expect(notOwner.status).toBe(403);
    expect(errorType(notOwner)).toBe("FORBIDDEN");
    expect((await list(bob, "nft_nope", "5")).status).toBe(404);
    const noToken = await list(bob, nft.id, "5", "tok_nope");
    expect(noToken.status).toBe(404);
    for (const price of ["0", "-1", "1.5", (MAX_UINT256 + 1n).toString()]) {
      const res = await list(bob, nft.id, price);
      expect(res.status, price).toBe(400);
      expect((res.body as unknown as ErrorBody).error.data?.[0].field).toBe("price");
    }
    expect(
      (
        await p.client.post(
          "/api/market/listings",
          { nftId: nft.id, priceTokenId: tokenId, price: 5 },
          { token: bob.token },
        )
      ).status,
    ).toBe(400);
    expect((await p.client.post("/api/market/listings", {})).status).toBe(401);
  });

  it("one active listing per NFT: a second is 409, also when two requests race", async () => {
    const nft = await nftOf(bob);
    await listed(bob, nft.id, "10");
    const second = await list(bob, nft.id, "11");
    expect(second.status).toBe(409);
    expect(errorType(second)).toBe("CONFLICT");

    const other = await nftOf(bob);
    const raced = await Promise.all([list(bob, other.id, "1"), list(bob, other.id, "2")]);
    expect(raced.map(r => r.status).sort()).toEqual([201, 409]);
    const live = await p.client.get<List<Listing>>(
      `/api/market/listings?state=active&collection=${other.collectionId}`,
    );
    expect(live.body.total).toBe(1);
  });

  it("the seller cancels (200 cancelled); anyone else 403; a cancelled listing is not for sale", async () => {
    const nft = await nftOf(bob);
    const l = await listed(bob, nft.id, "10");
    const byCat = await p.client.delete(`/api/market/listings/${l.id}`, { token: cat.token });
    expect(byCat.status).toBe(403);
    const res = await p.client.delete<Listing>(`/api/market/listings/${l.id}`, {
      token: bob.token,
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: l.id, state: "cancelled" });
    expect(
      (await p.client.delete(`/api/market/listings/lst_nope`, { token: bob.token })).status,
    ).toBe(404);
    const [catBefore] = await balances(tokenId, cat);
    const bought = await buy(cat, l.id);
    expect(bought.status).toBe(409);
    expect((await balances(tokenId, cat))[0]).toBe(catBefore);
    // Listed again once the old listing is gone.
    expect((await list(bob, nft.id, "12")).status).toBe(201);
  });

  it("a listing with expiresAt: 400 for a bad one; past it expired, not for sale, its NFT listable again", async () => {
    const nft = await nftOf(bob);
    const soon = (ms: number) => ({ expiresAt: new Date(Date.now() + ms).toISOString() });
    for (const expiresAt of ["yesterday", new Date(Date.now() - 1000).toISOString()]) {
      const bad = await list(bob, nft.id, "10", tokenId, { expiresAt });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body)).toContain("expiresAt");
    }
    expect((await list(bob, nft.id, "10", tokenId, soon(400 * 24 * 3600_000))).status).toBe(400);

    const res = await list(bob, nft.id, "10", tokenId, soon(800));
    expect(res.status, res.text).toBe(201);
    const l = res.body;
    expect(l).toMatchObject({ state: "active", expiresAt: expect.any(String) });
    // Until then it is listed: a second listing of the NFT is refused.
    expect((await list(bob, nft.id, "11")).status).toBe(409);
    const inCollection = (state: string) =>
      p.client.get<List<Listing>>(
        `/api/market/listings?state=${state}&collection=${nft.collectionId}`,
      );
    expect((await inCollection("active")).body.total).toBe(1);

    await new Promise(r => setTimeout(r, Date.parse(l.expiresAt!) - Date.now() + 20));
    // Read at once as expired, whether or not the market has written it yet.
    expect((await p.client.get<Listing>(`/api/market/listings/${l.id}`)).body.state).toBe(
      "expired",
    );
    expect((await inCollection("active")).body.total).toBe(0);
    expect((await inCollection("expired")).body.rows.map(r => r.id)).toEqual([l.id]);
    const [catBefore] = await balances(tokenId, cat);
    const bought = await buy(cat, l.id);
    expect(bought.status).toBe(409);
    expect((await balances(tokenId, cat))[0]).toBe(catBefore);
    expect(await ownerOf(nft.id)).toBe(bob.id);

    // The market writes the expiry with its event (what activity shows as listing.expired).
    const market = p.broker.getLocalService("market") as unknown as {
      database: { store: (n: string) => { findOne: (q: object) => Promise<unknown> } };
    };
    await waitUntil(async () => {
      const doc = (await market.database.store("listings").findOne({ _id: l.id })) as {
        state: string;
      };
      return doc.state === "expired";
    }, 5000);
    const again = await list(bob, nft.id, "12");
    expect(again.status, again.text).toBe(201);
    expect((await p.client.get<Listing>(`/api/market/listings/${l.id}`)).body.state).toBe(
      "expired",
    );
  });

  it("buys: 201 { listing sold, sagaId }; the price split exactly, the NFT to the buyer, its approval cleared", async () => {
    const nft = await nftOf(bob, 250);
    // An approval Bob gave stays with him, not with the NFT's next owner.
    await p.client.post(`/api/nfts/${nft.id}/approve`, { spender: ann.id }, { token: bob.token });
    const l = await listed(bob, nft.id, "1001");
    const before = await balances(tokenId, ann, bob, cat);
    const res = await buy(cat, l.id);
    expect(res.status, res.text).toBe(201);
    expect(res.body.sagaId).toMatch(/^sag_/);
    expect(res.body.listing).toMatchObject({ id: l.id, state: "sold" });
    expect(res.headers.get("location")).toBe(`/api/market/listings/${l.id}`);
    // floor(1001 × 250 / 10000) = 25 to Ann; 976 to Bob.
    const after = await balances(tokenId, ann, bob, cat);
    expect(after.map((a, i) => BigInt(a) - BigInt(before[i]))).toEqual([25n, 976n, -1001n]);
    const moved = (await p.client.get<Nft>(`/api/nfts/${nft.id}`)).body;
    expect(moved).toMatchObject({ ownerId: cat.id, approved: null });
    expect((await p.client.get<Listing>(`/api/market/listings/${l.id}`)).body.state).toBe("sold");
    // Sold once: buying again is a 409 and moves nothing.
    expect((await buy(ann, l.id)).status).toBe(409);
    expect(await balances(tokenId, ann, bob, cat)).toEqual(after);
  });

  it("royalty arithmetic near 2^256−1: price = max, royaltyBps 9999, nothing lost", async () => {
    const max = MAX_UINT256.toString();
    const big = (await createToken(p.client, cat.token, { decimals: 0, initialSupply: max })).id;
    used.push(big);
    const nft = await nftOf(bob, 9999);
    const l = await listed(bob, nft.id, max, big);
    const res = await buy(cat, l.id);
    expect(res.status, res.text).toBe(201);
    const royalty = (MAX_UINT256 * 9999n) / 10_000n;
    const [a, b, c] = await balances(big, ann, bob, cat);
    expect(a).toBe(royalty.toString());
    expect(b).toBe((MAX_UINT256 - royalty).toString());
    expect(c).toBe("0");
    expect(BigInt(a) + BigInt(b)).toBe(MAX_UINT256);
  });

  it("1-unit prices: a royalty that floors to 0 pays the seller 1; a royalty of 100 % pays the owner 1", async () => {
    const one = (await createToken(p.client, cat.token, { decimals: 0, initialSupply: "2" })).id;
    used.push(one);
    const floored = await nftOf(bob, 9999);
    expect((await buy(cat, (await listed(bob, floored.id, "1", one)).id)).status).toBe(201);
    expect(await balances(one, ann, bob, cat)).toEqual(["0", "1", "1"]);
    const all = await nftOf(bob, 10_000);
    expect((await buy(cat, (await listed(bob, all.id, "1", one)).id)).status).toBe(201);
    expect(await balances(one, ann, bob, cat)).toEqual(["1", "1", "0"]);
    expect(await ownerOf(all.id)).toBe(cat.id);
  });

  it("422 INSUFFICIENT_FUNDS moves nothing: the listing is active again, the NFT stays", async () => {
    const dan = await registerUser(p.client, "dan");
    await give(cat, dan, "990");
    const nft = await nftOf(bob, 250);
    const l = await listed(bob, nft.id, "1000");
    const before = await balances(tokenId, ann, bob, dan);
    // 990 covers the seller's 975 but not the royalty too: the first payment is undone.
    const res = await buy(dan, l.id);
    expect(res.status, res.text).toBe(422);
    expect(errorType(res)).toBe("INSUFFICIENT_FUNDS");
    expect(await balances(tokenId, ann, bob, dan)).toEqual(before);
    expect(await ownerOf(nft.id)).toBe(bob.id);
    expect((await p.client.get<Listing>(`/api/market/listings/${l.id}`)).body.state).toBe("active");
    // Short from the start: the same.
    const eve = await registerUser(p.client, "eve");
    expect((await buy(eve, l.id)).status).toBe(422);
    // Still for sale to someone who can pay.
    expect((await buy(cat, l.id)).status).toBe(201);
  });

  it("the seller cannot buy their own listing (403); a listing needs a user to buy (401)", async () => {
    const nft = await nftOf(bob);
    const l = await listed(bob, nft.id, "3");
    await give(cat, bob, "3");
    const res = await buy(bob, l.id);
    expect(res.status).toBe(403);
    expect((await p.client.post(`/api/market/listings/${l.id}/buy`)).status).toBe(401);
    expect((await buy(cat, "lst_nope")).status).toBe(404);
    expect((await p.client.get<Listing>(`/api/market/listings/${l.id}`)).body.state).toBe("active");
  });

  it("an NFT moved away by a plain transfer: its listing is not buyable (409) and shows cancelled", async () => {
    const nft = await nftOf(bob);
    const l = await listed(bob, nft.id, "7");
    const moved = await p.client.post(
      `/api/nfts/${nft.id}/transfer`,
      { to: ann.id },
      {
        token: bob.token,
      },
    );
    expect(moved.status).toBe(200);
    const [catBefore] = await balances(tokenId, cat);
    const res = await buy(cat, l.id);
    expect(res.status).toBe(409);
    expect((await balances(tokenId, cat))[0]).toBe(catBefore);
    expect((await p.client.get<Listing>(`/api/market/listings/${l.id}`)).body.state).toBe(
      "cancelled",
    );
    expect(await ownerOf(nft.id)).toBe(ann.id);
  });

  it("cancels the listing when the nfts.transferred event arrives, without anyone buying", async () => {
    const nft = await nftOf(bob);
    const l = await listed(bob, nft.id, "7");
    await p.client.post(`/api/nfts/${nft.id}/transfer`, { to: ann.id }, { token: bob.token });
    await waitUntil(
      async () =>
        (await p.client.get<Listing>(`/api/market/listings/${l.id}`)).body.state === "cancelled",
      5000,
    );
  });

  it("10 buyers race for one listing: exactly one 201, nine 409, the losers' balances unchanged", async () => {
    const buyers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => registerUser(p.client, `buyer${i}`)),
    );
    for (const b of buyers) await give(cat, b, "100");
    const nft = await nftOf(bob, 1000);
    const l = await listed(bob, nft.id, "100");
    const [annBefore, bobBefore] = await balances(tokenId, ann, bob);
    const results = await Promise.all(buyers.map(b => buy(b, l.id)));
    const statuses = results.map(r => r.status);
    expect(statuses.filter(s => s === 201)).toHaveLength(1);
    expect(statuses.filter(s => s === 409)).toHaveLength(9);
    const winner = buyers[statuses.indexOf(201)];
    expect(await ownerOf(nft.id)).toBe(winner.id);
    const final = (await p.client.get<Listing>(`/api/market/listings/${l.id}`)).body;
    expect(final.state).toBe("sold");
    const after = await balances(tokenId, ...buyers);
    for (let i = 0; i < buyers.length; i++)
      expect(after[i]).toBe(buyers[i] === winner ? "0" : "100");
    const [annAfter, bobAfter] = await balances(tokenId, ann, bob);
    expect(BigInt(annAfter) - BigInt(annBefore)).toBe(10n);
    expect(BigInt(bobAfter) - BigInt(bobBefore)).toBe(90n);
  });

  it("counts sales and their volume per price token in analytics", async () => {
    const summary = async () =>
      (await p.client.get<AnalyticsSummary>("/api/analytics/summary", { token: ann.token })).body;
    const sold = await p.client.get<List<Listing>>(`/api/market/listings?state=sold&limit=100`);
    const volume = sold.body.rows
      .filter(l => l.priceTokenId === tokenId)
      .reduce((s, l) => s + BigInt(l.price), 0n);
    await waitUntil(async () => (await summary()).sales === sold.body.total, 5000);
    const s = await summary();
    expect(s.salesVolumeByToken[tokenId]).toBe(volume.toString());
  });
});
