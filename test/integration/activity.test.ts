import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type ErrorBody, type Registered } from "../helpers/http";
import { createToken, startClients, uniqueSymbol, type TransferBody } from "../helpers/tokens";
import { waitUntil } from "../helpers/cluster";
import { expectEscrowBalanced } from "../helpers/escrow";
import type { ActivityRow } from "../../lib/events/activity";
import type { Listing } from "../../lib/events/market";
import type { Collection, Nft } from "../../lib/events/nfts";

/**
 * The activity history over HTTP, the whole platform in this process: every event type
 * gives its rows, cursor pages neither skip nor repeat a row while transfers flow, a
 * transfer's Location answers at once, and bad queries get their 400s.
 */

interface Page<T> {
  rows: T[];
  next: string | null;
}
interface TransferEntry extends TransferBody {
  spender?: string;
  cursor?: string;
}

describe("activity over HTTP", () => {
  let p: Platform;
  let alice: Registered;
  let bob: Registered;
  let carol: Registered;

  beforeAll(async () => {
    p = await startPlatform(
      ["api", "users", "tokens", "nfts", "market", "sagas", "dex", "marketing", "activity"],
      { RATE_LIMIT_MAX: "0" },
    );
    [alice, bob, carol] = await Promise.all(
      ["alice", "bob", "carol"].map(n => registerUser(p.client, n)),
    );
  });
  afterAll(() => p.stop());

  const get = <T>(path: string, who?: Registered) => p.client.get<T>(path, { token: who?.token });
  const post = <T>(path: string, body: unknown, who: Registered) =>
    p.client.post<T>(path, body, { token: who.token });

  /** Every row of `path` (a cursor list), page by page. */
  async function all<T>(
    path: string,
    who?: Registered,
    limit = 100,
    from: string | null = null,
  ): Promise<T[]> {
    const rows: T[] = [];
    let cursor = from;
    for (;;) {
      const sep = path.includes("?") ? "&" : "?";
      const q: string = `${path}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`;
      const res = await get<Page<T>>(q, who);
      expect(res.status).toBe(200);
      rows.push(...res.body.rows);
      if (!res.body.next) return rows;
      cursor = res.body.next;
    }
  }

  const expectFieldError = (res: { status: number; body: unknown }, field: string) => {
    expect(res.status).toBe(400);
    const err = (res.body as ErrorBody).error;
    expect(err.type).toBe("VALIDATION_ERROR");
    expect(err.data?.map(d => d.field)).toContain(field);
  };

  const mine = (who: Registered, query = "") => all<ActivityRow>(`/api/me/activity${query}`, who);

  it("gives a token's creator token.created, and each side of a transfer its row", async () => {
    const token = await createToken(p.client, alice.token, { initialSupply: "1000" });
    const res = await post<TransferBody>(
      `/api/tokens/${token.id}/transfers`,
      { to: bob.id, amount: "7" },
      alice,
    );
    expect(res.status).toBe(201);
    const self = await post<TransferBody>(
      `/api/tokens/${token.id}/transfers`,
      { to: alice.id, amount: "1" },
      alice,
    );
    await waitUntil(async () => (await mine(bob, `?tokenId=${token.id}`)).length === 1, 5000, 20);
    await waitUntil(async () => (await mine(alice, `?tokenId=${token.id}`)).length === 3, 5000, 20);
    const a = await mine(alice, `?tokenId=${token.id}`);
    // Newest first; a transfer to oneself is one transfer.out with from = to.
    expect(a.map(r => r.type)).toEqual(["transfer.out", "transfer.out", "token.created"]);
    expect(a[0]!.data).toEqual({
      transferId: self.body.id,
      from: alice.id,
      to: alice.id,
      amount: "1",
    });
    expect(a[1]!.data).toEqual({
      transferId: res.body.id,
      from: alice.id,
      to: bob.id,
      amount: "7",
    });
    expect(a[2]).toMatchObject({
      actorId: alice.id,
      tokenId: token.id,
      data: { symbol: token.symbol },
    });
    const [b] = await mine(bob, `?tokenId=${token.id}`);
    expect(b).toMatchObject({
      type: "transfer.in",
      actorId: bob.id,
      tokenId: token.id,
      data: { transferId: res.body.id, from: alice.id, to: bob.id, amount: "7" },
    });
    expect(b!.id).not.toBe(a[1]!.id);
    // The token's transfers: each once.
    const transfers = await all<TransferEntry>(`/api/tokens/${token.id}/transfers`);
    expect(transfers.map(t => t.id)).toEqual([self.body.id, res.body.id]);
    expect(transfers[1]).toMatchObject({ ...res.body, cursor: expect.any(String) as string });
    const ofBob = await all<TransferEntry>(`/api/tokens/${token.id}/transfers?account=${bob.id}`);
    expect(ofBob.map(t => t.id)).toEqual([res.body.id]);
  });

  it("records approvals for owner and spender, and a transfer-from's spender", async () => {
    const token = await createToken(p.client, alice.token, { initialSupply: "100" });
    const approved = await post(
      `/api/tokens/${token.id}/approvals`,
      { spender: bob.id, amount: "30" },
      alice,
    );
    expect(approved.status).toBe(200);
    const moved = await post<TransferBody>(
      `/api/tokens/${token.id}/transfers-from`,
      { from: alice.id, to: carol.id, amount: "20" },
      bob,
    );
    expect(moved.status).toBe(201);
    await waitUntil(async () => (await mine(carol, `?tokenId=${token.id}`)).length === 1, 5000, 20);
    const approval = { tokenId: token.id, owner: alice.id, spender: bob.id, amount: "30" };
    const ofBob = await mine(bob, `?tokenId=${token.id}`);
    expect(ofBob.map(r => [r.type, r.data])).toEqual([["approval", approval]]);
    const transfer = {
      transferId: moved.body.id,
      from: alice.id,
      to: carol.id,
      amount: "20",
      spender: bob.id,
    };
    const ofAlice = await mine(alice, `?tokenId=${token.id}&type=transfer.out,approval`);
    expect(ofAlice.map(r => [r.type, r.data])).toEqual([
      ["transfer.out", transfer],
      ["approval", approval],
    ]);
    expect((await mine(carol, `?tokenId=${token.id}`))[0]).toMatchObject({
      type: "transfer.in",
      data: transfer,
    });
    const [t] = await all<TransferEntry>(`/api/tokens/${token.id}/transfers`);
    expect(t).toMatchObject({ id: moved.body.id, spender: bob.id, from: alice.id, to: carol.id });
  });

  it("records NFTs, listings and sales (royalty included), each event once in NFT and collection lists", async () => {
    const price = await createToken(p.client, carol.token, { decimals: 0, initialSupply: "1000" });
    const c = await post<Collection>(
      "/api/collections",
      { name: "Art", symbol: "ART", royaltyBps: 1000 },
      alice,
    );
    expect(c.status).toBe(201);
    const minted = await post<Nft>(
      `/api/collections/${c.body.id}/nfts`,
      { to: bob.id, metadata: { name: "Piece" } },
      alice,
    );
    expect(minted.status).toBe(201);
    const nftId = minted.body.id;
    const listing = { nftId, priceTokenId: price.id, price: "100" };
    const first = await post<Listing>("/api/market/listings", listing, bob);
    expect(first.status).toBe(201);
    const cancelled = await p.client.delete(`/api/market/listings/${first.body.id}`, {
      token: bob.token,
    });
    expect(cancelled.status).toBe(200);
    const second = await post<Listing>("/api/market/listings", listing, bob);
    expect(second.status).toBe(201);
    const bought = await post(`/api/market/listings/${second.body.id}/buy`, undefined, carol);
    expect(bought.status, bought.text).toBe(201);
    await expectEscrowBalanced(p, [price.id]);

    const ofNft = () => all<ActivityRow>(`/api/nfts/${nftId}/activity?order=asc`);
    await waitUntil(async () => (await ofNft()).length === 6, 5000, 20);
    const nftRows = await ofNft();
    // The NFT's move (nfts) and the sale (market) come from two services' outboxes: the
    // history has them in the order they arrived, which may be either.
    const settled = (types: string[], last: number) => [
      ...types.slice(0, types.length - last),
      ...types.slice(types.length - last).sort(),
    ];
    // Each event once (its lead row): the sale's seller row, not the buyer's or the royalty's.
    expect(
      settled(
        nftRows.map(r => r.type),
        2,
      ),
    ).toEqual([
      "nft.minted",
      "listing.created",
      "listing.cancelled",
      "listing.created",
      "nft.transferred.out",
      "sale.sold",
    ]);
    expect(new Set(nftRows.map(r => r.id)).size).toBe(nftRows.length);
    expect(nftRows[0]).toMatchObject({
      actorId: bob.id,
      nftId,
      collectionId: c.body.id,
      data: { nftId, collectionId: c.body.id, serial: 1, to: bob.id },
    });
    const sale = {
      listingId: second.body.id,
      nftId,
      collectionId: c.body.id,
      priceTokenId: price.id,
      price: "100",
      seller: bob.id,
      buyer: carol.id,
      royalty: "10",
      royaltyTo: alice.id,
    };
    expect(nftRows.find(r => r.type === "sale.sold")).toMatchObject({
      actorId: bob.id,
      tokenId: price.id,
      data: sale,
    });
    const ofCollection = await all<ActivityRow>(`/api/collections/${c.body.id}/activity`);
    expect(ofCollection.map(r => r.id)).toEqual(nftRows.map(r => r.id).reverse());
    const sales = await all<ActivityRow>(
      `/api/collections/${c.body.id}/activity?type=sale.sold,sale.bought,royalty,listing.cancelled`,
    );
    expect(sales.map(r => r.type)).toEqual(["sale.sold", "listing.cancelled"]);

    // Each account's own rows.
    const nftTypes = "nft.minted,nft.transferred.in,nft.transferred.out";
    const saleTypes = "sale.sold,sale.bought,royalty,listing.created,listing.cancelled";
    const ofCarol = await mine(carol, `?collectionId=${c.body.id}`);
    expect(ofCarol.map(r => r.type).sort()).toEqual(["nft.transferred.in", "sale.bought"]);
    expect(ofCarol.find(r => r.type === "sale.bought")!.data).toEqual(sale);
    const ofAlice = await mine(alice, `?collectionId=${c.body.id}&type=${saleTypes},${nftTypes}`);
    expect(ofAlice.map(r => [r.type, r.data.amount])).toEqual([["royalty", "10"]]);
    const ofBob = await mine(bob, `?collectionId=${c.body.id}&type=${saleTypes},${nftTypes}`);
    expect(settled(ofBob.map(r => r.type).reverse(), 2).reverse()).toEqual([
      "sale.sold",
      "nft.transferred.out",
      "listing.created",
      "listing.cancelled",
      "listing.created",
      "nft.minted",
    ]);
  });

  it("records a launch that completed and one that was undone", async () => {
    const launch = (supply: string, liquidity: string) =>
      post<{ id: string; state: string }>(
        "/api/launches",
        {
          token: {
            name: "Launched",
            symbol: uniqueSymbol("L"),
            decimals: 0,
            initialSupply: supply,
          },
          liquidity: { amount: liquidity },
        },
        carol,
      );
    const done = await launch("100", "10");
    expect(done.status).toBe(201);
    const undone = await launch("10", "100");
    expect(undone.status).toBe(201);
    expect(undone.body.state).toBe("compensated");
    const launches = () => mine(carol, "?type=launch.completed,launch.compensated");
    await waitUntil(async () => (await launches()).length === 2, 5000, 20);
    expect((await launches()).map(r => [r.type, r.data.sagaId])).toEqual([
      ["launch.compensated", undone.body.id],
      ["launch.completed", done.body.id],
    ]);
  });

  it("pages through an account's history while 8 clients send: no row skipped or repeated", async () => {
    const [ann, dan] = await Promise.all(["ann", "dan"].map(n => registerUser(p.client, n)));
    const token = await createToken(p.client, ann.token, { decimals: 0, initialSupply: "100000" });
    const seed = await post<TransferBody>(
      `/api/tokens/${token.id}/transfers`,
      { to: dan.id, amount: "50000" },
      ann,
    );
    expect(seed.status).toBe(201);
    // The earliest rows of Ann's history, and a cursor taken now.
    await waitUntil(async () => (await mine(ann, `?tokenId=${token.id}`)).length === 2, 5000, 20);
    const early = await mine(ann, `?tokenId=${token.id}&order=asc`);
    const earlyCursor = early[0]!.cursor;

    const sent: string[] = [];
    const PER_CLIENT = 20;
    const counts = new Array<number>(8).fill(0);
    const clients = startClients(8, async c => {
      if (counts[c]! >= PER_CLIENT) return new Promise(r => setTimeout(r, 20));
      counts[c]!++;
      // Half send from Ann, half to her: both kinds of row in her history.
      const [from, to] = c % 2 === 0 ? [ann, dan] : [dan, ann];
      const res = await post<TransferBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: to.id, amount: "1" },
        from,
      );
      expect(res.status).toBe(201);
      sent.push(res.body.id);
    });
    const total = 8 * PER_CLIENT;
    const allSent = () => counts.every(n => n >= PER_CLIENT) && sent.length === total;

    /** Newest first from now to the start, while rows keep arriving above. */
    const desc = async (): Promise<ActivityRow[]> => {
      const rows: ActivityRow[] = [];
      let cursor = "";
      for (;;) {
        const q = `/api/me/activity?tokenId=${token.id}&limit=7${cursor ? `&cursor=${cursor}` : ""}`;
        const res = await get<Page<ActivityRow>>(q, ann);
        expect(res.status).toBe(200);
        rows.push(...res.body.rows);
        if (!res.body.next) return rows;
        cursor = res.body.next;
      }
    };
    /** Oldest first, following the tail (as a live stream resumes) until all was sent. */
    const asc = async (): Promise<ActivityRow[]> => {
      const rows: ActivityRow[] = [];
      let cursor = "";
      for (;;) {
        const q = `/api/me/activity?tokenId=${token.id}&order=asc&limit=5${cursor ? `&cursor=${cursor}` : ""}`;
        const res = await get<Page<ActivityRow>>(q, ann);
        expect(res.status).toBe(200);
        rows.push(...res.body.rows);
        const last = res.body.rows.at(-1);
        if (last) cursor = last.cursor;
        if (res.body.next) continue;
        if (rows.length >= total + 2) return rows;
        await new Promise(r => setTimeout(r, 5));
      }
    };
    const pagedWhileSending = await Promise.all([
      desc(),
      asc(),
      (async () => {
        await waitUntil(allSent, 30_000, 10);
        await clients.stop();
      })(),
    ]);
    const [down, up] = pagedWhileSending;
    const transferIds = (rows: ActivityRow[]) =>
      rows.filter(r => r.type !== "token.created").map(r => r.data.transferId as string);

    // Ascending: everything, once each, in cursor order.
    expect(up).toHaveLength(total + 2);
    expect(new Set(up.map(r => r.id)).size).toBe(up.length);
    expect(up.map(r => r.cursor)).toEqual(up.map(r => r.cursor).sort());
    expect(transferIds(up).slice(1).sort()).toEqual([...sent].sort());
    expect(transferIds(up)[0]).toBe(seed.body.id);
    // Each row on the side of Ann it should be.
    for (const r of up.slice(1)) {
      const d = r.data as { from: string; to: string };
      expect(r.type).toBe(d.from === ann.id ? "transfer.out" : "transfer.in");
    }
    // Descending: exactly the rows older than its first page's first row, newest first.
    const top = up.findIndex(r => r.id === down[0]!.id);
    expect(top).toBeGreaterThanOrEqual(1);
    expect(down.map(r => r.id)).toEqual(
      up
        .slice(0, top + 1)
        .map(r => r.id)
        .reverse(),
    );
    // The cursor taken before all of it still gives every row after it.
    const after = await all<ActivityRow>(
      `/api/me/activity?tokenId=${token.id}&order=asc`,
      ann,
      100,
      earlyCursor,
    );
    expect(after.map(r => r.id)).toEqual(up.slice(1).map(r => r.id));
    // The token's transfers: each transfer once, the same as what was sent.
    const listed = await all<TransferEntry>(`/api/tokens/${token.id}/transfers`, undefined, 50);
    expect(listed.map(t => t.id).sort()).toEqual([...sent, seed.body.id].sort());
  }, 60_000);

  it("answers a transfer's Location right after its 201, and 404 for an unknown one", async () => {
    const token = await createToken(p.client, alice.token, { initialSupply: "100" });
    for (let i = 0; i < 10; i++) {
      const res = await post<TransferBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: bob.id, amount: "1" },
        alice,
      );
      expect(res.status).toBe(201);
      const location = res.headers.get("location")!;
      expect(location).toBe(`/api/tokens/${token.id}/transfers/${res.body.id}`);
      const got = await get<TransferEntry>(location);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject(res.body);
    }
    expect((await get(`/api/tokens/${token.id}/transfers/trf_nope`)).status).toBe(404);
    const [one] = await all<TransferEntry>(`/api/tokens/${token.id}/transfers`);
    expect((await get(`/api/tokens/tok_other/transfers/${one!.id}`)).status).toBe(404);
  });

  it("refuses an unknown type, a bad cursor and a limit out of range (400), anonymous me (401)", async () => {
    expectFieldError(await get("/api/me/activity?type=transfer.in,nope", alice), "type");
    expectFieldError(await get("/api/me/activity?cursor=not-a-cursor", alice), "cursor");
    expectFieldError(await get("/api/nfts/nft_x/activity?cursor=%20", alice), "cursor");
    expectFieldError(await get("/api/collections/col_x/activity?type=sale"), "type");
    expectFieldError(await get("/api/tokens/tok_x/transfers?limit=0"), "limit");
    expectFieldError(await get("/api/tokens/tok_x/transfers?limit=101"), "limit");
    expectFieldError(await get("/api/me/activity?order=up", alice), "order");
    expect((await get("/api/me/activity")).status).toBe(401);
    const empty = await get<Page<ActivityRow>>("/api/nfts/nft_none/activity");
    expect(empty.body).toEqual({ rows: [], next: null });
  });
});
