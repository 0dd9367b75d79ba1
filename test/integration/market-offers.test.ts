import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type ErrorBody, type Registered } from "../helpers/http";
import { balanceOf, createToken } from "../helpers/tokens";
import { waitUntil } from "../helpers/cluster";
import { expectEscrowBalanced } from "../helpers/escrow";
import type { Listing, Offer } from "../../lib/events/market";
import type { Collection, Nft } from "../../lib/events/nfts";

/**
 * Offers over HTTP (docs/api.md "Marketplace"): escrowed when made, accepted by the owner of
 * a matching NFT as a sale, cancelled or expired with the escrow paid back, and the races
 * between them, and their rows in the activity history; the real gateway, users, tokens,
 * nfts, market, sagas and activity in one process.
 * After every test the escrow holds exactly the prices of the active offers.
 */

const SERVICES = ["api", "users", "tokens", "nfts", "market", "sagas", "activity"];
const ENV = {
  READY_SERVICES: "users,tokens,nfts,market,sagas",
  RATE_LIMIT_MAX: "0",
  MARKET_EXPIRY_INTERVAL_MS: "100",
};
type List<T> = { rows: T[]; total: number };
interface Accepted {
  offer: Offer;
  sale: { nftId: string; sellerId: string; buyerId: string; price: string; royalty: string };
}

describe("offers", () => {
  let p: Platform;
  let ann: Registered; // collection owner: 10 % royalty
  let bob: Registered; // owner of NFTs
  let dan: Registered; // another owner
  let cat: Registered; // makes offers, holds the price token
  let tok: string;
  let col: Collection;

  beforeAll(async () => {
    p = await startPlatform(SERVICES, ENV);
    [ann, bob, dan, cat] = await Promise.all(
      ["ann", "bob", "dan", "cat"].map(n => registerUser(p.client, n)),
    );
    tok = (await createToken(p.client, cat.token, { decimals: 0, initialSupply: "100000" })).id;
    col = (
      await p.client.post<Collection>(
        "/api/collections",
        { name: "Cats", symbol: "CAT", royaltyBps: 1000 },
        { token: ann.token },
      )
    ).body;
  });
  afterAll(() => p.stop());
  afterEach(() => escrowMatchesActiveOffers());

  const mint = async (to: Registered, traits: Record<string, string> = {}) => {
    const attributes = Object.entries(traits).map(([trait_type, value]) => ({ trait_type, value }));
    const res = await p.client.post<Nft>(
      `/api/collections/${col.id}/nfts`,
      { to: to.id, metadata: { name: "Cat", attributes } },
      { token: ann.token },
    );
    expect(res.status, res.text).toBe(201);
    return res.body;
  };
  const offer = (who: Registered, body: Record<string, unknown>, key?: string) =>
    p.client.post<Offer>(
      "/api/market/offers",
      { priceTokenId: tok, ...body },
      { token: who.token, ...(key ? { headers: { "idempotency-key": key } } : {}) },
    );
  const made = async (who: Registered, body: Record<string, unknown>) => {
    const res = await offer(who, body);
    expect(res.status, res.text).toBe(201);
    return res.body;
  };
  const accept = (who: Registered, id: string, nftId: string) =>
    p.client.post<Accepted>(`/api/market/offers/${id}/accept`, { nftId }, { token: who.token });
  const cancel = (who: Registered, id: string) =>
    p.client.delete<Offer>(`/api/market/offers/${id}`, { token: who.token });
  const bal = async (who: Registered | string) =>
    BigInt(await balanceOf(p.client, tok, typeof who === "string" ? who : who.id));
  const ownerOf = async (nftId: string) =>
    (await p.client.get<Nft>(`/api/nfts/${nftId}`)).body.ownerId;
  const errorType = (res: { body: unknown }) => (res.body as ErrorBody).error.type;

  /** The escrow holds the prices of the active offers and nothing else (test/helpers/escrow.ts). */
  const escrowMatchesActiveOffers = () => expectEscrowBalanced(p, [tok]);

  it("an offer on one NFT: escrowed when made, accepted as a sale with its royalty", async () => {
    const nft = await mint(bob);
    const [catBefore, bobBefore, annBefore] = await Promise.all([bal(cat), bal(bob), bal(ann)]);
    const o = await made(cat, { nftId: nft.id, price: "1000" });
    expect(o).toMatchObject({
      makerId: cat.id,
      nftId: nft.id,
      collectionId: col.id,
      state: "active",
    });
    expect(await bal(cat)).toBe(catBefore - 1000n);
    expect((await p.client.get<Offer>(`/api/market/offers/${o.id}`)).body).toEqual(o);
    await escrowMatchesActiveOffers();

    expect((await accept(dan, o.id, nft.id)).status).toBe(403); // not the owner
    const res = await accept(bob, o.id, nft.id);
    expect(res.status, res.text).toBe(201);
    expect(res.body.offer).toMatchObject({ id: o.id, state: "accepted", soldNftId: nft.id });
    expect(res.body.sale).toMatchObject({ sellerId: bob.id, buyerId: cat.id, royalty: "100" });
    expect(await ownerOf(nft.id)).toBe(cat.id);
    expect(await bal(bob)).toBe(bobBefore + 900n);
    expect(await bal(ann)).toBe(annBefore + 100n);
    expect((await accept(bob, o.id, nft.id)).status).toBe(409);
    await escrowMatchesActiveOffers();
  });

  it("a maker short of funds gets 422 and no offer; a bad body 400", async () => {
    const nft = await mint(bob);
    const before = await bal(dan);
    const res = await offer(dan, { nftId: nft.id, price: "5" });
    expect(res.status, res.text).toBe(422);
    expect(errorType(res)).toBe("INSUFFICIENT_FUNDS");
    expect(await bal(dan)).toBe(before);
    const mine = await p.client.get<List<Offer>>(`/api/market/offers?maker=${dan.id}`);
    expect(mine.body.total).toBe(0);
    expect((await offer(cat, { price: "5" })).status).toBe(400); // neither nftId nor collectionId
    expect((await offer(cat, { nftId: nft.id, collectionId: col.id, price: "5" })).status).toBe(
      400,
    );
    expect((await offer(cat, { nftId: nft.id, price: "0" })).status).toBe(400);
    expect(
      (await offer(cat, { nftId: nft.id, price: "5", expiresAt: "2001-01-01T00:00:00Z" })).status,
    ).toBe(400);
    await escrowMatchesActiveOffers();
  });

  it("a collection offer with traits: only a matching NFT's owner may accept it", async () => {
    const plain = await mint(bob, { Eyes: "Red" });
    const gold = await mint(bob, { Eyes: "Red", Fur: "Gold" });
    const o = await made(cat, {
      collectionId: col.id,
      traits: [{ trait_type: "Fur", value: "Gold" }],
      price: "300",
    });
    expect(o.nftId).toBeNull();
    const wrong = await accept(bob, o.id, plain.id);
    expect(wrong.status).toBe(403);
    const ok = await accept(bob, o.id, gold.id);
    expect(ok.status, ok.text).toBe(201);
    expect(await ownerOf(gold.id)).toBe(cat.id);
    await escrowMatchesActiveOffers();
  });

  it("the maker cancels: the escrow comes back; anyone else 403; then it cannot be accepted", async () => {
    const nft = await mint(bob);
    const before = await bal(cat);
    const o = await made(cat, { nftId: nft.id, price: "250" });
    expect((await cancel(bob, o.id)).status).toBe(403);
    const res = await cancel(cat, o.id);
    expect(res.status, res.text).toBe(200);
    expect(res.body.state).toBe("cancelled");
    expect(await bal(cat)).toBe(before);
    expect((await accept(bob, o.id, nft.id)).status).toBe(409);
    expect((await cancel(cat, o.id)).status).toBe(409);
    await escrowMatchesActiveOffers();
  });

  it("an offer past its expiresAt reads expired at once and is paid back", async () => {
    const nft = await mint(bob);
    const before = await bal(cat);
    const o = await made(cat, {
      nftId: nft.id,
      price: "40",
      expiresAt: new Date(Date.now() + 700).toISOString(),
    });
    await new Promise(r => setTimeout(r, Date.parse(o.expiresAt!) - Date.now() + 20));
    expect((await p.client.get<Offer>(`/api/market/offers/${o.id}`)).body.state).toBe("expired");
    expect((await accept(bob, o.id, nft.id)).status).toBe(409);
    await waitUntil(async () => (await bal(cat)) === before, 10_000);
    await escrowMatchesActiveOffers();
  });

  it("two owners accepting one collection offer: one sale, the other 409", async () => {
    const a = await mint(bob);
    const b = await mint(dan);
    const o = await made(cat, { collectionId: col.id, price: "77" });
    const [ra, rb] = await Promise.all([accept(bob, o.id, a.id), accept(dan, o.id, b.id)]);
    expect([ra.status, rb.status].sort()).toEqual([201, 409]);
    const owners = [await ownerOf(a.id), await ownerOf(b.id)];
    expect(owners.filter(x => x === cat.id)).toHaveLength(1);
    await escrowMatchesActiveOffers();
  });

  it("accept racing cancel: exactly one wins, and the money adds up either way", async () => {
    for (let i = 0; i < 5; i++) {
      const nft = await mint(bob);
      const [catBefore, bobBefore] = await Promise.all([bal(cat), bal(bob)]);
      const o = await made(cat, { nftId: nft.id, price: "10" });
      const [ra, rc] = await Promise.all([accept(bob, o.id, nft.id), cancel(cat, o.id)]);
      const won = [ra.status === 201, rc.status === 200];
      expect(won.filter(Boolean), `${ra.status} ${ra.text} / ${rc.status} ${rc.text}`).toHaveLength(
        1,
      );
      if (ra.status === 201) {
        expect(await ownerOf(nft.id)).toBe(cat.id);
        expect(await bal(cat)).toBe(catBefore - 10n);
        expect(await bal(bob)).toBe(bobBefore + 9n);
      } else {
        expect(await ownerOf(nft.id)).toBe(bob.id);
        expect(await bal(cat)).toBe(catBefore);
      }
    }
    await escrowMatchesActiveOffers();
  });

  it("an NFT listed and under offer, sold through the offer: the listing ends", async () => {
    const nft = await mint(bob);
    const listing = await p.client.post<Listing>(
      "/api/market/listings",
      { nftId: nft.id, priceTokenId: tok, price: "500" },
      { token: bob.token },
    );
    expect(listing.status, listing.text).toBe(201);
    const o = await made(cat, { nftId: nft.id, price: "450" });
    expect((await accept(bob, o.id, nft.id)).status).toBe(201);
    await waitUntil(
      async () =>
        (await p.client.get<Listing>(`/api/market/listings/${listing.body.id}`)).body.state ===
        "cancelled",
      5000,
    );
    const buy = await p.client.post(`/api/market/listings/${listing.body.id}/buy`, undefined, {
      token: dan.token,
    });
    expect(buy.status).toBe(409);
    await escrowMatchesActiveOffers();
  });

  it("every step shows in the history: made, accepted (with the seller's sale), cancelled, expired", async () => {
    const rowsOf = async (who: Registered, types: string) =>
      (
        await p.client.get<{ rows: Array<{ type: string; data: { offerId?: string } }> }>(
          `/api/me/activity?type=${types}&limit=100`,
          { token: who.token },
        )
      ).body.rows;
    const nft = await mint(bob);
    const sold = await made(cat, { nftId: nft.id, price: "20" });
    expect((await accept(bob, sold.id, nft.id)).status).toBe(201);
    const withdrawn = await made(cat, { collectionId: col.id, price: "3" });
    expect((await cancel(cat, withdrawn.id)).status).toBe(200);
    const lapsed = await made(cat, {
      collectionId: col.id,
      price: "4",
      expiresAt: new Date(Date.now() + 300).toISOString(),
    });
    const mine =
      (type: string, id: string) => (rows: Array<{ type: string; data: { offerId?: string } }>) =>
        rows.some(r => r.type === type && r.data.offerId === id);
    await waitUntil(async () => {
      const rows = await rowsOf(cat, "offer.made,offer.accepted,offer.cancelled,offer.expired");
      return (
        mine("offer.made", sold.id)(rows) &&
        mine("offer.accepted", sold.id)(rows) &&
        mine("offer.cancelled", withdrawn.id)(rows) &&
        mine("offer.expired", lapsed.id)(rows)
      );
    }, 10_000);
    await waitUntil(async () => mine("sale.sold", sold.id)(await rowsOf(bob, "sale.sold")), 5000);
    await waitUntil(async () => mine("royalty", sold.id)(await rowsOf(ann, "royalty")), 5000);
    await escrowMatchesActiveOffers();
  });
});
