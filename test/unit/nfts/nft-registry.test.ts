import { beforeEach, describe, expect, it } from "vitest";
import { openNedbStore } from "../../../lib/store/nedb/nedb-store";
import { Outbox, type OutboxDoc } from "../../../lib/messaging/outbox";
import { NFT_COLLECTIONS, NftRegistry, type NftStores } from "../../../lib/nfts/nft-registry";
import type { CollectionDoc, MintMarkDoc, NftDoc } from "../../../lib/nfts/nft-registry";
import type { DomainEvent } from "../../../lib/events/domain";
import type { Store } from "../../../lib/store/store";
import { quiet } from "../../helpers/ledger";
import { failOnce } from "../../helpers/stores";

/**
 * The NFT write model without a broker, over real NeDB stores in memory: ERC-721 rules as
 * OpenZeppelin's ERC721 tests state them, serials without gaps under concurrent mints, and
 * a crash between a mint's steps.
 */

let stores: NftStores & { outbox: Store<OutboxDoc> };
let published: DomainEvent[];
let outbox: Outbox;
let nfts: NftRegistry;
const meta = (name: string) => ({ name });

beforeEach(async () => {
  stores = {
    collections: await openNedbStore<CollectionDoc>("collections", NFT_COLLECTIONS.collections),
    nfts: await openNedbStore<NftDoc>("nfts", NFT_COLLECTIONS.nfts),
    mints: await openNedbStore<MintMarkDoc>("mints", NFT_COLLECTIONS.mints),
    outbox: await openNedbStore<OutboxDoc>("outbox", {}),
  };
  published = [];
  outbox = new Outbox(
    stores.outbox,
    { ready: () => true, publish: async (_t, e) => void published.push(e) },
    quiet,
  );
  nfts = new NftRegistry(stores, outbox);
});

const collection = (maxSupply?: number, owner = "alice") =>
  nfts.createCollection(owner, `c-${Math.random()}`, { name: "Art", symbol: "ART", maxSupply });

describe("minting", () => {
  it("numbers mints from 1 and answers a repeated key with the same NFT", async () => {
    const c = await collection();
    const a = await nfts.mint(c.id, "alice", "m1", "bob", meta("one"));
    const b = await nfts.mint(c.id, "alice", "m2", "alice", meta("two"));
    expect([a.serial, b.serial]).toEqual([1, 2]);
    expect(a).toMatchObject({ collectionId: c.id, ownerId: "bob", approved: null });
    expect(await nfts.mint(c.id, "alice", "m1", "bob", meta("one"))).toEqual(a);
    expect((await nfts.collection(c.id)).minted).toBe(2);
  });

  it("lets only the collection's owner mint", async () => {
    const c = await collection();
    await expect(nfts.mint(c.id, "mallory", "m1", "mallory", meta("x"))).rejects.toMatchObject({
      code: 403,
    });
    await expect(nfts.mint("col_nope", "alice", "m2", "alice", meta("x"))).rejects.toMatchObject({
      code: 404,
    });
  });

  it("mints exactly maxSupply of 20 concurrent mints, serials 1..10 without gaps", async () => {
    const c = await collection(10);
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => nfts.mint(c.id, "alice", `m${i}`, "bob", meta(`n${i}`))),
    );
    const minted = results.filter(r => r.status === "fulfilled").map(r => r.value.serial);
    expect(minted.sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const r of results.filter(r => r.status === "rejected"))
      expect(r.reason).toMatchObject({ code: 422, type: "SUPPLY_EXCEEDED" });
    expect(await stores.nfts.count({ collectionId: c.id })).toBe(10);
  });

  it("loses no serial to a crash before the NFT is written: the NFT is the serial's claim", async () => {
    const c = await collection(3);
    failOnce(stores.nfts, "insert");
    await expect(nfts.mint(c.id, "alice", "m1", "bob", meta("one"))).rejects.toThrow(/crash point/);
    // A new process on the same stores: nothing to finish, the next mint takes serial 1.
    nfts = new NftRegistry(stores, outbox);
    expect(await nfts.recover()).toBe(0);
    expect((await nfts.mint(c.id, "alice", "m2", "bob", meta("two"))).serial).toBe(1);
    // The crashed call's retry mints it then, once.
    expect((await nfts.mint(c.id, "alice", "m1", "bob", meta("one"))).serial).toBe(2);
    const all = await nfts.list({ collection: c.id }, 10, 0);
    expect(all.rows.map(n => n.serial).sort()).toEqual([1, 2]);
    expect(await stores.mints.count({})).toBe(0);
  });

  it("finishes a mint a crash left between writing the NFT and its event", async () => {
    const c = await collection(3);
    failOnce(stores.outbox, "insert");
    await expect(nfts.mint(c.id, "alice", "m1", "bob", meta("one"))).rejects.toThrow(/crash point/);
    nfts = new NftRegistry(stores, outbox);
    expect(await nfts.recover()).toBe(1);
    expect((await nfts.collection(c.id)).minted).toBe(1);
    expect(await stores.mints.count({})).toBe(0);
    expect((await nfts.mint(c.id, "alice", "m2", "bob", meta("two"))).serial).toBe(2);
    await outbox.flush();
    expect(published.filter(e => e.type === "nfts.minted")).toHaveLength(2);
  });

  it("finishes a mint recorded on its collection by the former design", async () => {
    const c = await collection(3);
    const at = new Date().toISOString();
    const pending = [{ serial: 1, key: "old", to: "bob", metadata: meta("old"), at }];
    await stores.collections.update({ _id: c.id }, { $set: { minted: 1, pending } });
    expect(await nfts.recover()).toBe(1);
    expect((await nfts.mint(c.id, "alice", "old", "bob", meta("old"))).serial).toBe(1);
    expect((await nfts.mint(c.id, "alice", "m2", "bob", meta("two"))).serial).toBe(2);
    expect((await stores.collections.findOne({ _id: c.id }))?.pending).toEqual([]);
  });
});

describe("approvals and transfers", () => {
  async function minted() {
    const c = await collection();
    return nfts.mint(c.id, "alice", `m-${Math.random()}`, "bob", meta("one"));
  }

  it("lets the owner approve a spender, who may transfer once; the transfer clears it", async () => {
    const n = await minted();
    await expect(nfts.approve(n.id, "carol", "a0", "carol")).rejects.toMatchObject({ code: 403 });
    expect((await nfts.approve(n.id, "bob", "a1", "carol")).approved).toBe("carol");
    const moved = await nfts.transfer(n.id, "carol", "t1", "dave");
    expect(moved).toMatchObject({ ownerId: "dave", approved: null });
    await expect(nfts.transfer(n.id, "carol", "t2", "carol")).rejects.toMatchObject({ code: 403 });
  });

  it("clears an approval with null, and refuses the owner as its own spender", async () => {
    const n = await minted();
    await nfts.approve(n.id, "bob", "a1", "carol");
    expect((await nfts.approve(n.id, "bob", "a2", null)).approved).toBeNull();
    await expect(nfts.approve(n.id, "bob", "a3", "bob")).rejects.toMatchObject({ code: 400 });
  });

  it("lets one of two racing transfers win; the other finds it no longer the caller's", async () => {
    const n = await minted();
    const results = await Promise.allSettled([
      nfts.transfer(n.id, "bob", "t1", "carol"),
      nfts.transfer(n.id, "bob", "t2", "dave"),
    ]);
    expect(results.filter(r => r.status === "fulfilled")).toHaveLength(1);
    expect(results.filter(r => r.status === "rejected")[0]).toMatchObject({
      reason: { code: 403 },
    });
    // Its own retry answers the NFT as it is, not a refusal of its own success.
    const winner = results.findIndex(r => r.status === "fulfilled");
    const again = await nfts.transfer(
      n.id,
      "bob",
      `t${winner + 1}`,
      winner === 0 ? "carol" : "dave",
    );
    expect(again.ownerId).toBe(winner === 0 ? "carol" : "dave");
  });

  it("moves it for a sale only while the seller still owns it", async () => {
    const n = await minted();
    await nfts.transfer(n.id, "bob", "t1", "carol");
    await expect(nfts.transferFrom(n.id, "bob", "sale1", "erin")).rejects.toMatchObject({
      code: 409,
    });
    expect((await nfts.transferFrom(n.id, "carol", "sale2", "erin")).ownerId).toBe("erin");
  });

  it("writes every change's event, also one a crash left unwritten", async () => {
    const n = await minted();
    failOnce(stores.outbox, "insert", doc => doc.type === "nfts.transferred");
    await expect(nfts.transfer(n.id, "bob", "t1", "carol")).rejects.toThrow(/crash point/);
    nfts = new NftRegistry(stores, outbox);
    await nfts.recover();
    await outbox.flush();
    const moved = published.filter(e => e.type === "nfts.transferred");
    expect(moved.map(e => e.data)).toEqual([
      { nftId: n.id, collectionId: n.collectionId, from: "bob", to: "carol", version: 2 },
    ]);
  });
});
