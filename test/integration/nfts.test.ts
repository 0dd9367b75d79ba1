import { describe, expect, it } from "vitest";
import { usePlatform, useUsers } from "../helpers/platform";
import type { ErrorBody, Registered } from "../helpers/http";
import { waitUntil } from "../helpers/cluster";
import type { Collection, Nft } from "../../lib/events/nfts";
import type { AnalyticsSummary } from "../../lib/read-models/read-model";

/**
 * NFTs and collections over HTTP (docs/api.md "NFTs and collections"): the real gateway, users,
 * nfts and analytics in one process, NeDB in memory. ERC-721 rules as OpenZeppelin's
 * ERC721 tests state them: only the collection's owner mints; only the owner approves;
 * the owner or the approved account transfers, which clears the approval; serials from 1
 * without gaps, never past maxSupply, also under concurrent mints.
 */

const SERVICES = ["api", "users", "nfts", "analytics"];
const ENV = { READY_SERVICES: "users,nfts", RATE_LIMIT_MAX: "0" };

type List<T> = { rows: T[]; total: number };

describe("NFTs over HTTP", () => {
  const p = usePlatform(SERVICES, ENV);
  const [ann, bob, cat] = useUsers(p, ["ann", "bob", "cat"]);

  const approve = (who: Registered, nftId: string, spender: string | null) =>
    p.client.post<Nft>(`/api/nfts/${nftId}/approve`, { spender }, { token: who.token });
  const moveNft = (who: Registered, nftId: string, to: string) =>
    p.client.post<Nft>(`/api/nfts/${nftId}/transfer`, { to }, { token: who.token });

  const newCollection = async (who: Registered, body: Record<string, unknown> = {}) => {
    const res = await p.client.post<Collection>(
      "/api/collections",
      { name: "Apes", symbol: "APE", ...body },
      { token: who.token },
    );
    expect(res.status, res.text).toBe(201);
    return res.body;
  };
  const mint = (who: Registered, collectionId: string, body: Record<string, unknown> = {}) =>
    p.client.post<Nft>(
      `/api/collections/${collectionId}/nfts`,
      { metadata: { name: "Ape" }, ...body },
      { token: who.token },
    );

  it("creates a collection (owner = caller) and reads it back without a user", async () => {
    const res = await p.client.post<Collection>(
      "/api/collections",
      { name: "Cats", symbol: "CAT", maxSupply: 3, royaltyBps: 250 },
      { token: ann.token },
    );
    expect(res.status).toBe(201);
    expect(res.headers.get("location")).toBe(`/api/collections/${res.body.id}`);
    expect(res.body).toMatchObject({
      name: "Cats",
      symbol: "CAT",
      ownerId: ann.id,
      maxSupply: 3,
      royaltyBps: 250,
      minted: 0,
    });
    const got = await p.client.get<Collection>(`/api/collections/${res.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(res.body);
    const mine = await p.client.get<List<Collection>>(`/api/collections?owner=${ann.id}`);
    expect(mine.body.rows.map(c => c.id)).toContain(res.body.id);
    expect((await p.client.get("/api/collections/col_nope")).status).toBe(404);
  });

  it("validates collections: royaltyBps 0–10000, maxSupply ≥ 1, a symbol; anonymous is 401", async () => {
    for (const bad of [
      { name: "X", symbol: "XX", royaltyBps: 10_001 },
      { name: "X", symbol: "XX", royaltyBps: -1 },
      { name: "X", symbol: "XX", maxSupply: 0 },
      { name: "X", symbol: "x" },
      { symbol: "XX" },
    ]) {
      const res = await p.client.post<ErrorBody>("/api/collections", bad, { token: ann.token });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(res.body.error.type).toBe("VALIDATION_ERROR");
    }
    const full = await newCollection(ann, { royaltyBps: 10_000 });
    expect(full.royaltyBps).toBe(10_000);
    expect((await p.client.post("/api/collections", { name: "X", symbol: "XX" })).status).toBe(401);
  });

  it("mints serials from 1 to the owner or to anyone; only the collection's owner may", async () => {
    const c = await newCollection(ann);
    const first = await mint(ann, c.id, {
      metadata: {
        name: "Ape #1",
        description: "the first",
        image: "https://example.com/1.png",
        attributes: [
          { trait_type: "fur", value: "gold" },
          { trait_type: "level", value: 3 },
        ],
      },
    });
    expect(first.status).toBe(201);
    expect(first.headers.get("location")).toBe(`/api/nfts/${first.body.id}`);
    expect(first.body).toMatchObject({
      collectionId: c.id,
      serial: 1,
      ownerId: ann.id,
      approved: null,
      metadata: { name: "Ape #1", attributes: [{ trait_type: "fur", value: "gold" }, {}] },
    });
    const second = await mint(ann, c.id, { to: bob.id });
    expect(second.status).toBe(201);
    expect(second.body).toMatchObject({ serial: 2, ownerId: bob.id });

    const refused = await mint(bob, c.id);
    expect(refused.status).toBe(403);
    expect((refused.body as unknown as ErrorBody).error.type).toBe("FORBIDDEN");
    expect((await mint(ann, "col_nope")).status).toBe(404);
    expect((await mint(ann, c.id, { to: "usr_nobody" })).status).toBe(404);

    const got = await p.client.get<Nft>(`/api/nfts/${second.body.id}`);
    expect(got.body).toEqual(second.body);
    expect((await p.client.get("/api/nfts/nft_nope")).status).toBe(404);
    const ofBob = await p.client.get<List<Nft>>(`/api/nfts?owner=${bob.id}&collection=${c.id}`);
    expect(ofBob.body).toEqual({ rows: [second.body], total: 1 });
    const all = await p.client.get<List<Nft>>(`/api/nfts?collection=${c.id}&limit=1`);
    expect(all.body.total).toBe(2);
    expect(all.body.rows).toHaveLength(1);
  });

  it("validates metadata: a name, an http(s) image, attributes of { trait_type, value }", async () => {
    const c = await newCollection(ann);
    for (const metadata of [
      {},
      { name: "" },
      { name: "x", image: "not a url" },
      { name: "x", attributes: [{ value: 1 }] },
      { name: "x", attributes: [{ trait_type: "a", value: { nested: true } }] },
    ]) {
      const res = await mint(ann, c.id, { metadata });
      expect(res.status, JSON.stringify(metadata)).toBe(400);
    }
    expect((await mint(ann, c.id, { metadata: undefined })).status).toBe(400);
    expect((await p.client.get<Collection>(`/api/collections/${c.id}`)).body.minted).toBe(0);
  });

  it("refuses a mint past maxSupply with 422 SUPPLY_EXCEEDED, minting nothing", async () => {
    const c = await newCollection(ann, { maxSupply: 1 });
    expect((await mint(ann, c.id)).status).toBe(201);
    const over = await mint(ann, c.id);
    expect(over.status).toBe(422);
    expect((over.body as unknown as ErrorBody).error.type).toBe("SUPPLY_EXCEEDED");
    const list = await p.client.get<List<Nft>>(`/api/nfts?collection=${c.id}`);
    expect(list.body.total).toBe(1);
  });

  it("20 concurrent mints into a collection of maxSupply 10: serials 1–10 exactly, 10 refused", async () => {
    const c = await newCollection(ann, { maxSupply: 10 });
    const results = await Promise.all(Array.from({ length: 20 }, () => mint(ann, c.id)));
    const ok = results.filter(r => r.status === 201);
    expect(ok).toHaveLength(10);
    expect(results.filter(r => r.status === 422)).toHaveLength(10);
    expect(ok.map(r => r.body.serial).sort((a, b) => a - b)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
    ]);
    const list = await p.client.get<List<Nft>>(`/api/nfts?collection=${c.id}&limit=100`);
    expect(list.body.total).toBe(10);
    expect((await p.client.get<Collection>(`/api/collections/${c.id}`)).body.minted).toBe(10);
  });

  it("approves (owner only), and a transfer by the approved account clears the approval", async () => {
    const c = await newCollection(ann);
    const nft = (await mint(ann, c.id)).body;
    const byBob = await approve(bob, nft.id, cat.id);
    expect(byBob.status).toBe(403);
    const approved = await approve(ann, nft.id, bob.id);
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ ownerId: ann.id, approved: bob.id });

    // Cat is neither owner nor approved.
    const byCat = await moveNft(cat, nft.id, cat.id);
    expect(byCat.status).toBe(403);
    const moved = await moveNft(bob, nft.id, cat.id);
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({ ownerId: cat.id, approved: null });
    // Bob's approval went with the move: he cannot move it again.
    const again = await moveNft(bob, nft.id, bob.id);
    expect(again.status).toBe(403);
    expect((await p.client.get<Nft>(`/api/nfts/${nft.id}`)).body.ownerId).toBe(cat.id);
  });

  it("clears an approval with null; the owner transfers; unknown NFT or account is 404", async () => {
    const c = await newCollection(ann);
    const nft = (await mint(ann, c.id)).body;
    await approve(ann, nft.id, bob.id);
    const cleared = await approve(ann, nft.id, null);
    expect(cleared.status).toBe(200);
    expect(cleared.body.approved).toBeNull();
    const byBob = await moveNft(bob, nft.id, bob.id);
    expect(byBob.status).toBe(403);
    const t = (to: string, id = nft.id) => moveNft(ann, id, to);
    expect((await t("usr_nobody")).status).toBe(404);
    expect((await t(bob.id, "nft_nope")).status).toBe(404);
    expect((await p.client.post(`/api/nfts/${nft.id}/transfer`, {})).status).toBe(401);
    const res = await t(bob.id);
    expect(res.status).toBe(200);
    expect(res.body.ownerId).toBe(bob.id);
  });

  it("two transfers racing for one NFT: one wins, the other is refused", async () => {
    const c = await newCollection(ann);
    const nft = (await mint(ann, c.id)).body;
    const [a, b] = await Promise.all([bob, cat].map(to => moveNft(ann, nft.id, to.id)));
    expect([a.status, b.status].sort()).toEqual([200, 403]);
    const winner = a.status === 200 ? a.body.ownerId : b.body.ownerId;
    expect((await p.client.get<Nft>(`/api/nfts/${nft.id}`)).body.ownerId).toBe(winner);
  });

  it("counts minted NFTs in analytics", async () => {
    const summary = async () =>
      (await p.client.get<AnalyticsSummary>("/api/analytics/summary", { token: ann.token })).body;
    const before = (await summary()).nftsMinted;
    const c = await newCollection(ann);
    await mint(ann, c.id);
    await mint(ann, c.id);
    await waitUntil(async () => (await summary()).nftsMinted >= before + 2, 5000);
    // Counted once each, not more.
    await new Promise(r => setTimeout(r, 300));
    const list = await p.client.get<List<Nft>>(`/api/nfts?limit=1`);
    expect((await summary()).nftsMinted).toBe(list.body.total);
  });
});
