import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type Registered } from "../helpers/http";
import { balanceOf, createToken } from "../helpers/tokens";
import { waitUntil } from "../helpers/cluster";
import { expectEscrowBalanced } from "../helpers/escrow";
import { ESCROW_ACCOUNT, type Listing } from "../../lib/events/market";
import type { Collection, Nft } from "../../lib/events/nfts";
import type { Saga } from "../../lib/sagas/saga-log";

/**
 * The seller who tries to keep both the payment and the NFT: once a purchase has started
 * (the listing shows `reserved`), they move the NFT to a second account of theirs and
 * their own balance away. Every ledger call is slowed (FAULTS) so the attack lands while
 * the sale is in flight. Whatever the race gives, the buyer ends owning the NFT or holding
 * all their money, the purchase ends completed or compensated (never failed), and the buyer
 * can read how it ended.
 */

const SERVICES = ["api", "users", "tokens", "nfts", "market", "sagas"];
const ENV = {
  READY_SERVICES: "users,tokens,nfts,market,sagas",
  RATE_LIMIT_MAX: "0",
  FAULTS: "tokens.transferInternal:delay=150ms",
  SAGAS_WAIT_MS: "100",
};
const RUNS = 20;
const PRICE = 100n;

describe("a seller who moves the NFT and their money away during a sale", () => {
  let p: Platform;
  let seller: Registered;
  let stash: Registered; // the seller's second account
  let buyer: Registered;
  let tokenId: string;
  let collectionId: string;

  beforeAll(async () => {
    p = await startPlatform(SERVICES, ENV);
    [seller, stash, buyer] = await Promise.all(
      ["seller", "stash", "buyer"].map(n => registerUser(p.client, n)),
    );
    tokenId = (
      await createToken(p.client, buyer.token, {
        decimals: 0,
        initialSupply: String(PRICE * BigInt(RUNS)),
      })
    ).id;
    const c = await p.client.post<Collection>(
      "/api/collections",
      { name: "Art", symbol: "ART", royaltyBps: 0 },
      { token: seller.token },
    );
    expect(c.status, c.text).toBe(201);
    collectionId = c.body.id;
  });
  afterAll(() => p.stop());
  // The escrow holds what the market says it does (nothing, once each sale ended).
  afterEach(() => expectEscrowBalanced(p, [tokenId]));

  const balance = (who: string) => balanceOf(p.client, tokenId, who).then(BigInt);
  const ownerOf = async (nftId: string) =>
    (await p.client.get<Nft>(`/api/nfts/${nftId}`)).body.ownerId;

  async function attackOnce(): Promise<{ outcome: "bought" | "refunded"; saga: Saga }> {
    const minted = await p.client.post<Nft>(
      `/api/collections/${collectionId}/nfts`,
      { metadata: { name: "Piece" } },
      { token: seller.token },
    );
    expect(minted.status, minted.text).toBe(201);
    const nft = minted.body;
    const listing = await p.client.post<Listing>(
      "/api/market/listings",
      { nftId: nft.id, priceTokenId: tokenId, price: String(PRICE) },
      { token: seller.token },
    );
    expect(listing.status, listing.text).toBe(201);
    const buyerBefore = await balance(buyer.id);
    const sellerSide = async () => (await balance(seller.id)) + (await balance(stash.id));
    const sellerSideBefore = await sellerSide();

    const buying = p.client.post<{ listing: Listing; sagaId: string }>(
      `/api/market/listings/${listing.body.id}/buy`,
      undefined,
      { token: buyer.token },
    );
    // The attack: as soon as the listing shows reserved, the NFT and the money go away.
    await waitUntil(async () => {
      const l = await p.client.get<Listing>(`/api/market/listings/${listing.body.id}`);
      return l.body.state !== "active";
    }, 5000);
    const moved = await p.client.post<Nft>(
      `/api/nfts/${nft.id}/transfer`,
      { to: stash.id },
      { token: seller.token },
    );
    const approved = await p.client.post<Nft>(
      `/api/nfts/${nft.id}/approve`,
      { spender: stash.id },
      { token: seller.token },
    );
    // Whatever reaches the seller's balance while the sale runs goes to the stash at once.
    const until = Date.now() + 5000;
    for (;;) {
      const sellerHas = await balance(seller.id);
      if (sellerHas > 0n) {
        const away = await p.client.post(
          `/api/tokens/${tokenId}/transfers`,
          { to: stash.id, amount: String(sellerHas) },
          { token: seller.token },
        );
        expect(away.status, away.text).toBe(201);
      }
      const l = await p.client.get<Listing>(`/api/market/listings/${listing.body.id}`);
      // The sale ended one way or the other (a sale stuck reserved is judged by the money).
      if (l.body.state !== "reserved" || Date.now() > until) break;
      await new Promise(resolve => setTimeout(resolve, 20));
    }
    const bought = await buying;
    expect([201, 202, 409], bought.text).toContain(bought.status);
    const owner = await ownerOf(nft.id);
    const buyerAfter = await balance(buyer.id);
    if (owner !== buyer.id) expect(buyerAfter, "the buyer paid but has no NFT").toBe(buyerBefore);

    // The buyer reads the purchase by its saga id (from the 201/202).
    let saga: Saga | undefined;
    const sagaId = bought.body.sagaId;
    if (sagaId) {
      await waitUntil(async () => {
        const res = await p.client.get<Saga>(`/api/market/purchases/${sagaId}`, {
          token: buyer.token,
        });
        expect(res.status, res.text).toBe(200);
        saga = res.body;
        return ["completed", "compensated", "failed"].includes(saga.state);
      }, 15_000);
      // The seller cannot read the buyer's purchase.
      const theirs = await p.client.get(`/api/market/purchases/${sagaId}`, {
        token: seller.token,
      });
      expect(theirs.status).toBe(404);
    }
    if (owner === buyer.id) {
      // Sold: the seller's moves were refused while the sale held the NFT, and paid.
      expect(moved.status, moved.text).toBe(409);
      expect(approved.status, approved.text).toBe(409);
      expect(buyerAfter).toBe(buyerBefore - PRICE);
      expect(await sellerSide()).toBe(sellerSideBefore + PRICE);
      if (saga) expect(saga.state).toBe("completed");
      return { outcome: "bought", saga: saga! };
    }
    // Not sold (the NFT left before the sale held it): the buyer holds all their money.
    expect(buyerAfter).toBe(buyerBefore);
    expect(await sellerSide()).toBe(sellerSideBefore);
    if (saga) expect(saga.state).toBe("compensated");
    return { outcome: "refunded", saga: saga! };
  }

  it(`ends ${RUNS} times out of ${RUNS} with the buyer owning the NFT or holding all their money`, async () => {
    const outcomes: string[] = [];
    // Both endings are fine; the note of the run says which happened how often.
    for (let i = 0; i < RUNS; i++) {
      const { outcome, saga } = await attackOnce();
      outcomes.push(outcome);
      if (saga) expect(saga.state, JSON.stringify(saga)).not.toBe("failed");
    }
    expect(outcomes).toHaveLength(RUNS);
    console.info(
      `theft runs: ${outcomes.filter(o => o === "bought").length} bought, ${outcomes.filter(o => o === "refunded").length} refunded`,
    );
    // Nothing is left in escrow once every sale ended.
    expect(await balance(ESCROW_ACCOUNT)).toBe(0n);
    // The supply is whole: buyer, seller, stash and escrow hold it all.
    const held = await Promise.all([buyer.id, seller.id, stash.id].map(balance));
    expect(held.reduce((a, b) => a + b, 0n)).toBe(PRICE * BigInt(RUNS));
  });

  it("refuses to start a purchase whose royalty exceeds its price (its payouts could never be paid)", async () => {
    const input = {
      listingId: "lst_x",
      nftId: "nft_x_1",
      sellerId: seller.id,
      buyerId: buyer.id,
      tokenId,
      price: "10",
      royalty: "11",
      royaltyTo: seller.id,
    };
    await expect(
      p.broker.call("sagas.purchase", { input, key: "buy:royalty-over-price" }),
    ).rejects.toMatchObject({ code: 400, data: [{ field: "input.royalty" }] });
  });

  it("the escrow is no account a user can pay to or name", async () => {
    const res = await p.client.post(
      `/api/tokens/${tokenId}/transfers`,
      { to: ESCROW_ACCOUNT, amount: "1" },
      { token: buyer.token },
    );
    expect(res.status, res.text).toBe(404);
    const from = await p.client.post(
      `/api/tokens/${tokenId}/transfers-from`,
      { from: ESCROW_ACCOUNT, to: buyer.id, amount: "0" },
      { token: buyer.token },
    );
    expect(from.status, from.text).toBe(404);
  });
});
