import { beforeEach, describe, expect, it } from "vitest";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import { Outbox, type OutboxDoc } from "../../../lib/messaging/outbox";
import { NFT_COLLECTIONS, NftRegistry } from "../../../lib/nfts/nft-registry";
import type { CollectionDoc, NftDoc } from "../../../lib/nfts/nft-registry";
import { NFT_EVENTS } from "../../../lib/events/nfts";
import type { DomainEvent } from "../../../lib/events/domain";
import type { Database } from "../../../lib/store/store";
import { atEachWrite, failInTransaction, outboxInto } from "../../helpers/stores";

/**
 * The NFT write model without a broker, over a real SQLite database in memory: ERC-721
 * rules as OpenZeppelin's ERC721 tests state them, serials without gaps under concurrent
 * mints, and a crash at each write of a change (it rolls the whole change back).
 */

let db: Database;
let published: DomainEvent[];
let outbox: Outbox;
let nfts: NftRegistry;
const meta = (name: string) => ({ name });
const collections = () => db.store<CollectionDoc>("collections");
const nftDocs = () => db.store<NftDoc>("nfts");
const outboxDocs = () => db.store<OutboxDoc>("outbox");

/** A new process on the same database: a new registry and outbox, nothing to recover. */
function restart(): void {
  // Into this test's list, not a later test's: an outbox may still flush after its test.
  outbox = outboxInto(db, published);
  nfts = new NftRegistry(db, outbox);
}

beforeEach(() => {
  db = SqliteDatabase.open({ ...NFT_COLLECTIONS, outbox: {} });
  published = [];
  restart();
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
    expect(await nftDocs().count({ collectionId: c.id })).toBe(10);
  });

  it("answers a repeated collection key with the collection it made", async () => {
    const a = await nfts.createCollection("alice", "c1", { name: "Art", symbol: "ART" });
    expect(await nfts.createCollection("alice", "c1", { name: "Art", symbol: "ART" })).toEqual(a);
    expect(await collections().count({})).toBe(1);
  });
});

describe("a mint is one transaction", () => {
  atEachWrite(
    [
      ["the NFT", "nfts", "insert"],
      ["the collection's counter", "collections", "update"],
      ["the event", "outbox", "insertMany"],
    ],
    what => `a crash at ${what} leaves nothing minted, and the retry of its key mints once`,
    async (name, method) => {
      const c = await collection(3);
      const crash = failInTransaction(db, name, method);
      await expect(nfts.mint(c.id, "alice", "m1", "bob", meta("one"))).rejects.toThrow(
        /crash point/,
      );
      expect(crash.fired()).toBe(true);
      expect(await nftDocs().count({})).toBe(0);
      expect((await nfts.collection(c.id)).minted).toBe(0);
      expect(await outboxDocs().count({})).toBe(0);
      // A new process finds nothing to repair; no serial was lost, the retry mints once.
      restart();
      const n = await nfts.mint(c.id, "alice", "m1", "bob", meta("one"));
      expect(n.serial).toBe(1);
      expect(await nfts.mint(c.id, "alice", "m1", "bob", meta("one"))).toEqual(n);
      expect((await nfts.mint(c.id, "alice", "m2", "bob", meta("two"))).serial).toBe(2);
      expect((await nfts.collection(c.id)).minted).toBe(2);
      await outbox.flush();
      const sent = published.filter(e => e.type === NFT_EVENTS.minted);
      expect(sent.map(e => (e.data as { nft: { serial: number } }).nft.serial)).toEqual([1, 2]);
    },
  );

  it("a crash of one of many concurrent mints leaves serials without gaps", async () => {
    const c = await collection(10);
    // The fourth mint's event: a crash in the middle of the others.
    const fourth = (docs: unknown) => JSON.stringify(docs).includes('"name":"n3"');
    failInTransaction(db, "outbox", "insertMany", fourth);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => nfts.mint(c.id, "alice", `m${i}`, "bob", meta(`n${i}`))),
    );
    expect(results.map(r => r.status).indexOf("rejected")).toBe(3);
    expect(results.filter(r => r.status === "rejected")).toHaveLength(1);
    expect((await nfts.mint(c.id, "alice", "m3", "bob", meta("n3"))).serial).toBe(10);
    const all = await nftDocs().find({ collectionId: c.id });
    expect(all.map(n => n.serial).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
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

  it("writes every change's event with the change", async () => {
    const n = await minted();
    await nfts.approve(n.id, "bob", "a1", "carol");
    await nfts.transfer(n.id, "carol", "t1", "dave");
    await outbox.flush();
    expect(published.map(e => e.type)).toEqual([
      NFT_EVENTS.minted,
      NFT_EVENTS.approved,
      NFT_EVENTS.transferred,
    ]);
    expect(published[2].data).toEqual({
      nftId: n.id,
      collectionId: n.collectionId,
      from: "bob",
      to: "dave",
      version: 3,
    });
  });

  atEachWrite(
    [
      ["the NFT", "nfts", "updateOne"],
      ["the event", "outbox", "insertMany"],
    ],
    what => `a crash at ${what} of a transfer moves nothing, and the retry moves it once`,
    async (name, method) => {
      const n = await minted();
      await outbox.flush();
      const crash = failInTransaction(db, name, method);
      await expect(nfts.transfer(n.id, "bob", "t1", "carol")).rejects.toThrow(/crash point/);
      expect(crash.fired()).toBe(true);
      expect(await nfts.get(n.id)).toEqual(n);
      expect(await outboxDocs().count({})).toBe(0);
      restart();
      const moved = await nfts.transfer(n.id, "bob", "t1", "carol");
      expect(moved.ownerId).toBe("carol");
      expect(await nfts.transfer(n.id, "bob", "t1", "carol")).toEqual(moved);
      await outbox.flush();
      expect(published.filter(e => e.type === NFT_EVENTS.transferred).map(e => e.data)).toEqual([
        { nftId: n.id, collectionId: n.collectionId, from: "bob", to: "carol", version: 2 },
      ]);
    },
  );

  it("a crash at the lock or unlock leaves the hold as it was, and the repeat takes it", async () => {
    const n = await minted();
    failInTransaction(db, "nfts", "updateOne");
    await expect(nfts.lock(n.id, "bob", "sale1")).rejects.toThrow(/crash point/);
    expect((await nftDocs().findOne({ _id: n.id }))?.lockedBy).toBeUndefined();
    await nfts.lock(n.id, "bob", "sale1");
    await expect(nfts.transfer(n.id, "bob", "t1", "carol")).rejects.toMatchObject({ code: 409 });
    failInTransaction(db, "nfts", "updateOne");
    await expect(nfts.unlock(n.id, "sale1")).rejects.toThrow(/crash point/);
    expect((await nftDocs().findOne({ _id: n.id }))?.lockedBy).toBe("sale1");
    await nfts.unlock(n.id, "sale1");
    expect((await nfts.transfer(n.id, "bob", "t1", "carol")).ownerId).toBe("carol");
  });
});
