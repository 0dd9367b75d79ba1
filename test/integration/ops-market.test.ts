import { describe, expect, it } from "vitest";
import type { ApiClient } from "../helpers/http";
import { usePlatform } from "../helpers/platform";
import { createToken } from "../helpers/tokens";
import { expectEscrowBalanced } from "../helpers/escrow";
import type { OpsSnapshot } from "../../lib/gateway/ops/snapshot";
import type { Auction, Offer } from "../../lib/events/market";
import type { Collection, Nft } from "../../lib/events/nfts";

/**
 * The operator page's market part (docs/observability.md "Operator page"): the escrow's
 * balance per price token beside what the market holds there (an offer's price, an
 * auction's highest bid) and whether they agree, and the auctions ending soonest, in the
 * snapshot an admin reads at /ops/api/snapshot (the page draws the same data).
 */

const ADMIN = "ops-market-admin@example.com";
const PASSWORD = "correct horse battery";

async function register(client: ApiClient, email: string) {
  const res = await client.post<{ user: { id: string }; token: string }>("/api/auth/register", {
    email,
    password: PASSWORD,
    displayName: email.split("@")[0],
  });
  expect(res.status, res.text).toBe(201);
  return { id: res.body.user.id, token: res.body.token };
}

describe("the operator page's market escrow and auctions", () => {
  const p = usePlatform(["api", "users", "tokens", "nfts", "market", "sagas"], {
    env: {
      ADMIN_EMAILS: ADMIN,
      READY_SERVICES: "users,tokens,nfts,market,sagas",
      RATE_LIMIT_MAX: "0",
    },
  });

  it("shows the escrow's balance = an offer's price + the highest bid, and the auctions by end", async () => {
    const admin = await register(p.client, ADMIN);
    const seller = await register(p.client, "ops-market-seller@example.com");
    const buyer = await register(p.client, "ops-market-buyer@example.com");
    const tok = (await createToken(p.client, buyer.token, { decimals: 0, initialSupply: "10000" }))
      .id;
    const col = await p.client.post<Collection>(
      "/api/collections",
      { name: "Ops", symbol: "OPS", royaltyBps: 0 },
      { token: seller.token },
    );
    expect(col.status, col.text).toBe(201);
    const nfts: Nft[] = [];
    for (let i = 0; i < 3; i++) {
      const n = await p.client.post<Nft>(
        `/api/collections/${col.body.id}/nfts`,
        { metadata: { name: `#${i}` } },
        { token: seller.token },
      );
      expect(n.status, n.text).toBe(201);
      nfts.push(n.body);
    }
    const offer = await p.client.post<Offer>(
      "/api/market/offers",
      { nftId: nfts[0].id, priceTokenId: tok, price: "300" },
      { token: buyer.token },
    );
    expect(offer.status, offer.text).toBe(201);
    const auction = async (nftId: string, inMs: number) => {
      const res = await p.client.post<Auction>(
        "/api/market/auctions",
        {
          nftId,
          priceTokenId: tok,
          reservePrice: "100",
          endsAt: new Date(Date.now() + inMs).toISOString(),
        },
        { token: seller.token },
      );
      expect(res.status, res.text).toBe(201);
      return res.body;
    };
    const later = await auction(nfts[1].id, 3_600_000);
    const sooner = await auction(nfts[2].id, 1_800_000);
    const bid = await p.client.post(
      `/api/market/auctions/${later.id}/bids`,
      { amount: "150" },
      { token: buyer.token },
    );
    expect(bid.status, bid.text).toBe(201);

    // Snapshots are shared for OPS_INTERVAL_MS (2 s): the first one is fresh.
    const snap = await p.client.get<OpsSnapshot>("/ops/api/snapshot", { token: admin.token });
    expect(snap.status, snap.text).toBe(200);
    const market = snap.body.market;
    expect(market).not.toBeNull();
    expect(market!.escrow).toMatchObject({
      account: "escrow_market",
      agrees: true,
      complete: true,
      counts: { offers: 1, auctions: 2, purchases: 0 },
    });
    expect(market!.escrow.tokens).toEqual([
      {
        tokenId: tok,
        balance: "450",
        held: "450",
        offers: "300",
        bids: "150",
        purchases: "0",
        agrees: true,
      },
    ]);
    // Soonest end first; the one without a bid says so.
    expect(market!.endingSoon).toEqual([
      {
        id: sooner.id,
        nftId: nfts[2].id,
        collectionId: col.body.id,
        priceTokenId: tok,
        highestBid: null,
        endsAt: sooner.endsAt,
      },
      {
        id: later.id,
        nftId: nfts[1].id,
        collectionId: col.body.id,
        priceTokenId: tok,
        highestBid: { bidderId: buyer.id, amount: "150" },
        endsAt: later.endsAt,
      },
    ]);

    // The page has the sections that draw it.
    const page = await p.client.get("/ops");
    expect(page.text).toContain('id="escrow"');
    expect(page.text).toContain('id="auctions"');
    await expectEscrowBalanced(p, [tok]);
  });

  it("bounds the auctions listed and checks its params", async () => {
    const ops = await p.broker.call<{ endingSoon: unknown[] }, { auctions: number }>(
      "market.opsStats",
      { auctions: 1 },
    );
    expect(ops.endingSoon).toHaveLength(1);
    await expect(p.broker.call("market.opsStats", { auctions: 51 })).rejects.toMatchObject({
      type: "VALIDATION_ERROR",
    });
  });
});
