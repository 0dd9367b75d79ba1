import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Errors, type Context, type Middleware, type Service } from "moleculer";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type ErrorBody, type Registered } from "../helpers/http";
import { balanceOf, createToken } from "../helpers/tokens";
import { waitUntil } from "../helpers/cluster";
import { expectEscrowBalanced } from "../helpers/escrow";
import { ESCROW_ACCOUNT, type Auction } from "../../lib/events/market";
import type { SagaSummary } from "../../lib/sagas/saga-log";
import type { Collection, Nft } from "../../lib/events/nfts";

/**
 * English auctions over HTTP (docs/api.md "Marketplace"): the NFT held by the market while
 * one runs, bids escrowed and the beaten one paid back at once, the reserve and the
 * increment, the end pushed on by a late bid, the end settled to the winner with its royalty
 * or unsold, cancelling before the first bid, and the races (50 bidders; the end against a
 * last bid); the real gateway, users, tokens, nfts, market, sagas and activity in one
 * process. After every test the escrow holds exactly the active offers' prices and the
 * active auctions' highest bids.
 */

const SERVICES = ["api", "users", "tokens", "nfts", "market", "sagas", "activity"];
const EXTENSION_MS = 1500;
const ENV = {
  READY_SERVICES: "users,tokens,nfts,market,sagas",
  RATE_LIMIT_MAX: "0",
  MARKET_EXPIRY_INTERVAL_MS: "50",
  AUCTION_EXTENSION_MS: String(EXTENSION_MS),
  // 50 bid sagas at once on a loaded machine: each answers when it ended, not 202.
  SAGAS_WAIT_MS: "20000",
};
type List<T> = { rows: T[]; total: number };
interface Bid {
  id: string;
  auctionId: string;
  bidderId: string;
  amount: string;
  auction: Auction;
}
type Row = { type: string; actorId: string; data: { auctionId?: string; amount?: string } };

/**
 * A fault around the real market.auctionPlaceBid of one bidder: `after` lets the bid go in
 * and loses its answer once (a 500: the saga cannot tell whether it is in); `before` fails
 * every call of theirs before it reaches the market, until cleared. `hits` counts them.
 */
const placeFault = {
  bidderId: "",
  mode: null as "after" | "before" | null,
  hits: 0,
};
const PlaceFault: Middleware & { name: string } = {
  name: "PlaceBidFault",
  localAction(next, action) {
    if (action.name !== "market.auctionPlaceBid") return next;
    return async function placeBidFault(this: Service, ctx: Context<{ bidderId: string }>) {
      const f = placeFault;
      if (f.mode === null || ctx.params.bidderId !== f.bidderId) return next.call(this, ctx);
      f.hits++;
      const lost = new Errors.MoleculerError("Injected: the answer was lost", 500, "LOST");
      if (f.mode === "before") throw lost;
      f.mode = null;
      await next.call(this, ctx);
      throw lost;
    };
  },
};

describe("auctions", () => {
  let p: Platform;
  let ann: Registered; // collection owner: 10 % royalty
  let bob: Registered; // seller
  let cat: Registered; // bidder, holds the price token
  let dan: Registered; // bidder
  let tok: string;
  let col: Collection;

  beforeAll(async () => {
    p = await startPlatform(SERVICES, { env: ENV, middlewares: [PlaceFault] });
    [ann, bob, cat, dan] = await Promise.all(
      ["ann", "bob", "cat", "dan"].map(n => registerUser(p.client, n)),
    );
    tok = (await createToken(p.client, cat.token, { decimals: 0, initialSupply: "10000000" })).id;
    await pay(dan, "100000");
    col = (
      await p.client.post<Collection>(
        "/api/collections",
        { name: "Owls", symbol: "OWL", royaltyBps: 1000 },
        { token: ann.token },
      )
    ).body;
  });
  afterAll(() => p.stop());
  afterEach(async () => {
    await escrowMatchesWhatItHolds();
  });

  const pay = async (to: Registered, amount: string) => {
    const res = await p.client.post(
      `/api/tokens/${tok}/transfers`,
      { to: to.id, amount },
      { token: cat.token },
    );
    expect(res.status, res.text).toBe(201);
  };
  const mint = async (to: Registered) => {
    const res = await p.client.post<Nft>(
      `/api/collections/${col.id}/nfts`,
      { to: to.id, metadata: { name: "Owl" } },
      { token: ann.token },
    );
    expect(res.status, res.text).toBe(201);
    return res.body;
  };
  const auction = (who: Registered, body: Record<string, unknown>) =>
    p.client.post<Auction>(
      "/api/market/auctions",
      { priceTokenId: tok, reservePrice: "100", ...body },
      { token: who.token },
    );
  const started = async (who: Registered, body: Record<string, unknown>) => {
    const res = await auction(who, body);
    expect(res.status, res.text).toBe(201);
    return res.body;
  };
  const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();
  const bid = (who: Registered, id: string, amount: string) =>
    p.client.post<Bid>(`/api/market/auctions/${id}/bids`, { amount }, { token: who.token });
  const get = async (id: string) =>
    (await p.client.get<Auction>(`/api/market/auctions/${id}`)).body;
  const ended = (id: string) =>
    waitUntil(async () => (await get(id)).state !== "active", 15_000, 20);
  const bal = async (who: Registered | string) =>
    BigInt(await balanceOf(p.client, tok, typeof who === "string" ? who : who.id));
  const ownerOf = async (nftId: string) =>
    (await p.client.get<Nft>(`/api/nfts/${nftId}`)).body.ownerId;
  const errorType = (res: { body: unknown }) => (res.body as ErrorBody).error.type;
  const rowsOf = async (who: Registered, types: string) =>
    (
      await p.client.get<{ rows: Row[] }>(`/api/me/activity?type=${types}&limit=100`, {
        token: who.token,
      })
    ).body.rows;

  const noSagaFailed = async () => {
    const recent = await p.broker.call<SagaSummary[], { limit: number }>("sagas.recent", {
      limit: 100,
    });
    expect(recent.filter(s => s.state === "failed")).toEqual([]);
  };

  /** The escrow holds the active auctions' highest bids and nothing else (test/helpers/escrow.ts). */
  const escrowMatchesWhatItHolds = () => expectEscrowBalanced(p, [tok]);

  it("an auction holds its NFT: its seller can neither move nor list it, nor auction it twice", async () => {
    const nft = await mint(bob);
    expect((await auction(cat, { nftId: nft.id, endsAt: inMs(60_000) })).status).toBe(403);
    expect((await auction(bob, { nftId: nft.id, endsAt: inMs(-1000) })).status).toBe(400);
    const a = await started(bob, { nftId: nft.id, endsAt: inMs(60_000) });
    expect(a).toMatchObject({
      nftId: nft.id,
      collectionId: col.id,
      sellerId: bob.id,
      state: "active",
      reservePrice: "100",
      minIncrementBps: 500,
      highestBid: null,
      winnerId: null,
    });
    expect(await get(a.id)).toEqual(a);
    const moved = await p.client.post(
      `/api/nfts/${nft.id}/transfer`,
      { to: dan.id },
      { token: bob.token },
    );
    expect(moved.status).toBe(409);
    const listed = await p.client.post(
      "/api/market/listings",
      { nftId: nft.id, priceTokenId: tok, price: "5" },
      { token: bob.token },
    );
    expect(listed.status).toBe(409);
    expect((await auction(bob, { nftId: nft.id, endsAt: inMs(60_000) })).status).toBe(409);
    const mine = await p.client.get<List<Auction>>(
      `/api/market/auctions?seller=${bob.id}&collection=${col.id}&state=active`,
    );
    expect(mine.body.rows.map(x => x.id)).toContain(a.id);

    // Cancelled before any bid (by its seller only): the NFT is free again.
    const del = (who: Registered) =>
      p.client.delete<Auction>(`/api/market/auctions/${a.id}`, { token: who.token });
    expect((await del(cat)).status).toBe(403);
    const cancelled = await del(bob);
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(cancelled.body.state).toBe("cancelled");
    expect((await bid(cat, a.id, "500")).status).toBe(409);
    const free = await p.client.post(
      `/api/nfts/${nft.id}/transfer`,
      { to: bob.id },
      { token: bob.token },
    );
    expect(free.status, free.text).toBe(200);
  });

  it("a listed NFT cannot be auctioned", async () => {
    const nft = await mint(bob);
    const listed = await p.client.post(
      "/api/market/listings",
      { nftId: nft.id, priceTokenId: tok, price: "5" },
      { token: bob.token },
    );
    expect(listed.status).toBe(201);
    const res = await auction(bob, { nftId: nft.id, endsAt: inMs(60_000) });
    expect(res.status, res.text).toBe(409);
    expect(await ownerOf(nft.id)).toBe(bob.id);
  });

  it("bids: escrowed, the beaten one paid back at once; the reserve and the increment hold; no cancelling once bid on", async () => {
    const nft = await mint(bob);
    const a = await started(bob, { nftId: nft.id, endsAt: inMs(60_000), minIncrementBps: 1000 });
    const [catBefore, danBefore] = await Promise.all([bal(cat), bal(dan)]);

    const low = await bid(cat, a.id, "99");
    expect(low.status).toBe(422);
    expect(errorType(low)).toBe("BID_TOO_LOW");
    expect((await bid(bob, a.id, "200")).status).toBe(403); // its seller

    const first = await bid(cat, a.id, "100");
    expect(first.status, first.text).toBe(201);
    expect(first.body).toMatchObject({ auctionId: a.id, bidderId: cat.id, amount: "100" });
    expect(first.body.auction.highestBid).toEqual({ bidderId: cat.id, amount: "100" });
    expect(await bal(cat)).toBe(catBefore - 100n);

    const short = await bid(dan, a.id, "109"); // under 100 × 1.10
    expect(short.status).toBe(422);
    expect(errorType(short)).toBe("BID_TOO_LOW");
    const poor = await registerUser(p.client, "poor");
    const broke = await bid(poor, a.id, "500");
    expect(broke.status).toBe(422);
    expect(errorType(broke)).toBe("INSUFFICIENT_FUNDS");

    const second = await bid(dan, a.id, "110");
    expect(second.status, second.text).toBe(201);
    expect(await bal(dan)).toBe(danBefore - 110n);
    expect(await bal(cat)).toBe(catBefore); // paid back at once
    expect((await get(a.id)).highestBid).toEqual({ bidderId: dan.id, amount: "110" });

    const del = await p.client.delete(`/api/market/auctions/${a.id}`, { token: bob.token });
    expect(del.status).toBe(409);
    await waitUntil(async () => {
      const placed = (await rowsOf(cat, "bid.placed,bid.refunded")).filter(
        r => r.data.auctionId === a.id,
      );
      return (
        placed.some(r => r.type === "bid.placed") && placed.some(r => r.type === "bid.refunded")
      );
    }, 5000);
  });

  it("a bid whose answer was lost is in: its saga learns it and goes on, the beaten bid paid back", async () => {
    const nft = await mint(bob);
    const a = await started(bob, { nftId: nft.id, endsAt: inMs(60_000) });
    const [catBefore, danBefore] = await Promise.all([bal(cat), bal(dan)]);
    expect((await bid(cat, a.id, "100")).status).toBe(201);
    Object.assign(placeFault, { bidderId: dan.id, mode: "after", hits: 0 });
    const r = await bid(dan, a.id, "200");
    expect(r.status, r.text).toBe(201); // its saga completed
    expect(placeFault.hits).toBe(1);
    expect(r.body.auction.highestBid).toEqual({ bidderId: dan.id, amount: "200" });
    expect(await bal(dan)).toBe(danBefore - 200n); // in the bid
    expect(await bal(cat)).toBe(catBefore); // beaten, paid back
    await noSagaFailed();
  });

  it("a bid that never got in and no longer can: its saga learns it and pays the escrow back", async () => {
    const nft = await mint(bob);
    const a = await started(bob, { nftId: nft.id, endsAt: inMs(60_000) });
    const [catBefore, danBefore] = await Promise.all([bal(cat), bal(dan)]);
    Object.assign(placeFault, { bidderId: dan.id, mode: "before", hits: 0 });
    const late = bid(dan, a.id, "200"); // escrowed; its placing fails, asked again
    await waitUntil(async () => placeFault.hits >= 2, 10_000, 20);
    expect(await bal(dan)).toBe(danBefore - 200n); // in escrow meanwhile
    expect((await bid(cat, a.id, "300")).status).toBe(201); // it can no longer get in
    placeFault.mode = null;
    const r = await late;
    expect(r.status, r.text).toBe(422);
    expect(errorType(r)).toBe("BID_TOO_LOW");
    expect(await bal(dan)).toBe(danBefore); // paid back
    expect(await bal(cat)).toBe(catBefore - 300n);
    expect((await get(a.id)).highestBid).toEqual({ bidderId: cat.id, amount: "300" });
    await noSagaFailed();
  }, 30_000);

  it("a bid near the end pushes it on; at the end the winner gets the NFT and the seller the price less the royalty", async () => {
    const nft = await mint(bob);
    const [bobBefore, annBefore, catBefore, danBefore] = await Promise.all([
      bal(bob),
      bal(ann),
      bal(cat),
      bal(dan),
    ]);
    const a = await started(bob, { nftId: nft.id, endsAt: inMs(800), reservePrice: "1000" });
    const first = await bid(cat, a.id, "1000");
    expect(first.status, first.text).toBe(201);
    const at = Date.now();
    expect(Date.parse(first.body.auction.endsAt)).toBeGreaterThan(Date.parse(a.endsAt));
    expect(Date.parse(first.body.auction.endsAt)).toBeGreaterThanOrEqual(at - 500 + EXTENSION_MS);
    const second = await bid(dan, a.id, "2000");
    expect(second.status, second.text).toBe(201);

    await ended(a.id);
    const done = await get(a.id);
    expect(done).toMatchObject({ state: "settled", winnerId: dan.id });
    expect(done.highestBid).toEqual({ bidderId: dan.id, amount: "2000" });
    expect(await ownerOf(nft.id)).toBe(dan.id);
    expect(await bal(bob)).toBe(bobBefore + 1800n);
    expect(await bal(ann)).toBe(annBefore + 200n);
    expect(await bal(cat)).toBe(catBefore);
    expect(await bal(dan)).toBe(danBefore - 2000n);
    expect((await bid(cat, a.id, "5000")).status).toBe(409); // ended
    // The winner's NFT is theirs to move: the hold ended with the auction.
    const moved = await p.client.post(
      `/api/nfts/${nft.id}/transfer`,
      { to: dan.id },
      { token: dan.token },
    );
    expect(moved.status, moved.text).toBe(200);

    const has = (who: Registered, type: string) =>
      waitUntil(async () => (await rowsOf(who, type)).some(r => r.data.auctionId === a.id), 5000);
    await has(dan, "auction.won");
    await has(bob, "auction.settled");
    await has(bob, "auction.started");
    await has(ann, "royalty");
    await has(cat, "bid.refunded");
    const settled = (await rowsOf(bob, "auction.settled")).filter(r => r.data.auctionId === a.id);
    expect(settled).toHaveLength(1);
  });

  it("an auction without a bid ends unsold: the NFT stays with its seller, free", async () => {
    const nft = await mint(bob);
    const a = await started(bob, { nftId: nft.id, endsAt: inMs(300) });
    await ended(a.id);
    expect((await get(a.id)).state).toBe("unsold");
    expect(await ownerOf(nft.id)).toBe(bob.id);
    const moved = await p.client.post(
      `/api/nfts/${nft.id}/transfer`,
      { to: bob.id },
      { token: bob.token },
    );
    expect(moved.status, moved.text).toBe(200);
    await waitUntil(
      async () => (await rowsOf(bob, "auction.unsold")).some(r => r.data.auctionId === a.id),
      5000,
    );
  });

  it("50 bidders racing: one highest bid, every other bid paid back, no money made or lost", async () => {
    // Registered a few at a time: scrypt's bulkhead answers 503 past its queue.
    const bidders: Registered[] = [];
    for (let i = 0; i < 50; i += 5)
      bidders.push(
        ...(await Promise.all(
          Array.from({ length: 5 }, (_, j) => registerUser(p.client, `bidder${i + j}`)),
        )),
      );
    for (const b of bidders) await pay(b, "10000");
    const nft = await mint(bob);
    const a = await started(bob, { nftId: nft.id, endsAt: inMs(60_000), minIncrementBps: 0 });
    const amounts = bidders.map((_, i) => 1000 + i * 10);
    const before = await Promise.all(bidders.map(b => bal(b)));
    const escrowBefore = await bal(ESCROW_ACCOUNT);

    const answers = await Promise.all(bidders.map((b, i) => bid(b, a.id, String(amounts[i]))));
    for (const r of answers) expect([201, 422], r.text).toContain(r.status);
    const refused = answers.filter(r => r.status === 422);
    for (const r of refused) expect(errorType(r)).toBe("BID_TOO_LOW");

    // The highest amount always gets in; everyone else has their money back.
    const top = await get(a.id);
    expect(top.highestBid).toEqual({ bidderId: bidders[49]!.id, amount: String(amounts[49]) });
    const after = await Promise.all(bidders.map(b => bal(b)));
    for (let i = 0; i < 49; i++) expect(after[i], `bidder ${i}`).toBe(before[i]);
    expect(after[49]).toBe(before[49]! - BigInt(amounts[49]!));
    expect(await bal(ESCROW_ACCOUNT)).toBe(escrowBefore + BigInt(amounts[49]!));
    const total = (xs: bigint[]) => xs.reduce((s, x) => s + x, 0n);
    expect(total(after) + (await bal(ESCROW_ACCOUNT))).toBe(total(before) + escrowBefore);
  }, 60_000);

  it("the end racing a last bid: the bid is in and pushes the end on, or refused as ended", async () => {
    const seen = new Set<number>();
    // The outer ones make sure both outcomes happen, whatever the load of the machine.
    for (const jitter of [-300, -60, -25, -5, 5, 25, 60, 300]) {
      const nft = await mint(bob);
      const catBefore = await bal(cat);
      const a = await started(bob, { nftId: nft.id, endsAt: inMs(900) });
      // A last bid sent about when the end comes, the market's sweep racing it.
      await new Promise(res => setTimeout(res, Date.parse(a.endsAt) + jitter - Date.now()));
      const sentAt = Date.now();
      const r = await bid(cat, a.id, "150");
      seen.add(r.status);
      expect([201, 409], r.text).toContain(r.status);
      await ended(a.id);
      const done = await get(a.id);
      if (r.status === 201) {
        expect(Date.parse(r.body.auction.endsAt)).toBeGreaterThanOrEqual(sentAt + EXTENSION_MS - 5);
        expect(done).toMatchObject({ state: "settled", winnerId: cat.id });
        expect(done.highestBid).toEqual({ bidderId: cat.id, amount: "150" });
        expect(await ownerOf(nft.id)).toBe(cat.id);
        expect(await bal(cat)).toBe(catBefore - 150n);
      } else {
        expect(errorType(r)).toBe("CONFLICT");
        expect(done.state).toBe("unsold");
        expect(await ownerOf(nft.id)).toBe(bob.id);
        expect(await bal(cat)).toBe(catBefore);
      }
    }
    expect(seen).toEqual(new Set([201, 409])); // both outcomes happened
  }, 60_000);
});
