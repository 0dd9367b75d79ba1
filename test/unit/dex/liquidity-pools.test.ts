import { Errors } from "moleculer";
import { beforeEach, describe, expect, it } from "vitest";
import {
  DEX_COLLECTIONS,
  LiquidityPools,
  dexStores,
  poolAccountId,
  type DexStores,
  type Move,
} from "../../../lib/dex/liquidity-pools";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import type { Database } from "../../../lib/store/store";
import { ledgerOn, openLedgerStores, type Ledger } from "../../helpers/ledger";
import { failInTransaction } from "../../helpers/stores";

/**
 * The dex's pools without a broker, over SQLite in memory, moving tokens through
 * the real transfer engine (what tokens.transferInternal runs): idempotent by key, and
 * replaying a refusal for its key. A crash is a write that throws inside one of the dex's
 * transactions, which then commits nothing; the retry of the same key finishes the
 * operation, as a client's retry after a restart would.
 */

let ledger: Ledger;
let db: Database;
let dex: DexStores;
let tokenId: string;
let moves: string[];
/** Moves wait for this before they reach the ledger, when set (an add still on its way). */
let held: { key: string; gate: Promise<void> } | null;

const move: Move = async m => {
  moves.push(m.key);
  if (held?.key === m.key) {
    const { gate } = held;
    held = null;
    await gate;
  }
  await ledger.engine.run({ kind: "transfer", spender: null, ...m });
};

const pools = () => new LiquidityPools(db, move);
const balance = (account: string) => ledger.engine.balance(tokenId, account);
const pool = () => dex.pools.findOne({ _id: tokenId });
const op = (key: string) => dex.ops.findOne({ _id: `add:${key}` });

/** The pool's reserve is what its ledger account holds, whatever happened. */
async function expectReserve(amount: string): Promise<void> {
  expect((await pool())?.reserve ?? "0").toBe(amount);
  expect(await balance(poolAccountId(tokenId))).toBe(amount);
}

beforeEach(async () => {
  ledger = ledgerOn(await openLedgerStores());
  db = SqliteDatabase.open(DEX_COLLECTIONS);
  dex = dexStores(db);
  const token = await ledger.registry.create("alice", "create-1", {
    name: "Mint",
    symbol: "MINT",
    decimals: 0,
    initialSupply: "1000",
  });
  tokenId = token._id;
  moves = [];
  held = null;
});

describe("LiquidityPools", () => {
  it("moves the provider's tokens into the pool account once per key", async () => {
    expect(await pools().get(tokenId)).toBeNull();
    const p = await pools().add(tokenId, "alice", "300", "k1");
    expect(p).toEqual({
      tokenId,
      account: poolAccountId(tokenId),
      reserve: "300",
      providerId: "alice",
    });
    expect(await pools().add(tokenId, "alice", "300", "k1")).toEqual(p);
    await Promise.all([1, 2, 3].map(() => pools().add(tokenId, "alice", "100", "k2")));
    expect(await balance("alice")).toBe("600");
    await expectReserve("400");
    await expect(pools().add(tokenId, "alice", "5", "k1")).rejects.toMatchObject({ code: 409 });
    expect(await pools().get(tokenId)).toMatchObject({ reserve: "400" });
  });

  it("keeps the ledger's refusal as the key's answer, and moves nothing", async () => {
    const big = () => pools().add(tokenId, "alice", "1001", "k1");
    await expect(big()).rejects.toMatchObject({ code: 422, type: "INSUFFICIENT_FUNDS" });
    await expect(big()).rejects.toMatchObject({ code: 422, type: "INSUFFICIENT_FUNDS" });
    expect(moves).toEqual(["add:k1"]); // the repeat answered from the operation
    expect(await op("k1")).toMatchObject({ state: "failed" });
    expect(await pools().remove(tokenId, "k1")).toBeNull();
    expect(await balance("alice")).toBe("1000");
    await expectReserve("0");
  });

  it("gives back what a key added to its provider, once, and the key cannot add again", async () => {
    await ledger.engine.run({
      kind: "transfer",
      tokenId,
      from: "alice",
      to: "bob",
      amount: "500",
      spender: null,
      key: "seed",
    });
    await Promise.all([
      pools().add(tokenId, "alice", "300", "a1"),
      pools().add(tokenId, "bob", "200", "b1"),
    ]);
    await expectReserve("500");
    expect(await pools().remove(tokenId, "a1")).toMatchObject({ reserve: "200" });
    expect(await pools().remove(tokenId, "a1")).toMatchObject({ reserve: "200" });
    expect(await balance("alice")).toBe("500");
    await expectReserve("200");
    await expect(pools().add(tokenId, "alice", "300", "a1")).rejects.toMatchObject({
      code: 409,
      message: expect.stringMatching(/withdrawn/),
    });
    expect(moves.filter(k => k === "add:a1")).toHaveLength(2); // the add, and its settling
    expect(await pools().remove(tokenId, "b1")).toBeNull(); // empty
    expect(await balance("bob")).toBe("500");
    await expectReserve("0");
    await expect(pools().remove("tok_other", "b1")).rejects.toMatchObject({ code: 409 });
  });

  it("fences a key whose add has not arrived: the add, when it comes, is refused", async () => {
    expect(await pools().remove(tokenId, "k1")).toBeNull();
    await expect(pools().add(tokenId, "alice", "300", "k1")).rejects.toMatchObject({
      code: 409,
      message: expect.stringMatching(/withdrawn/),
    });
    expect(moves).toEqual([]);
    expect(await balance("alice")).toBe("1000");
  });

  it("finishes a half-done add before reversing it; the late add is then refused", async () => {
    let open!: () => void;
    held = { key: "add:k1", gate: new Promise<void>(resolve => (open = resolve)) };
    const late = pools().add(tokenId, "alice", "300", "k1");
    await expect.poll(() => moves.length).toBe(1); // written, its transfer on its way
    expect(await pools().remove(tokenId, "k1")).toBeNull();
    expect(await balance("alice")).toBe("1000");
    open();
    await expect(late).rejects.toMatchObject({ code: 409 });
    expect(moves).toEqual(["add:k1", "add:k1", "undo:add:k1"]);
    expect(await op("k1")).toMatchObject({ state: "undone", added: true });
    expect(await balance("alice")).toBe("1000");
    await expectReserve("0");
  });

  it("lets the ledger's outcome decide when a transfer's answer was lost", async () => {
    let lose = 1;
    const lossy = new LiquidityPools(db, async m => {
      await move(m);
      if (lose-- > 0) throw new Errors.MoleculerError("Request timed out", 504, "REQUEST_TIMEOUT");
    });
    await expect(lossy.add(tokenId, "alice", "300", "k1")).rejects.toMatchObject({ code: 504 });
    expect(await op("k1")).toMatchObject({ state: "pending" });
    expect(await pools().add(tokenId, "alice", "300", "k1")).toMatchObject({ reserve: "300" });
    expect(await balance("alice")).toBe("700");
    await expectReserve("300");
  });
});

describe("LiquidityPools crash points: the reserve follows each operation once", () => {
  // The writes of the dex's own transactions, as the places a crash stops them.
  it.each([
    ["the new pool", "pools", "insert"],
    ["the add's mark and state", "ops", "updateOne"],
  ] as const)("at %s: nothing counted; the retry of the key counts it once", async (_n, c, m) => {
    const crash = failInTransaction(db, c, m);
    await expect(pools().add(tokenId, "alice", "300", "k1")).rejects.toThrow(/crash point/);
    expect(crash.fired()).toBe(true);
    expect(await pool()).toBeNull();
    expect(await op("k1")).toMatchObject({ state: "pending" });
    expect(await op("k1")).not.toHaveProperty("added");
    expect(await pools().add(tokenId, "alice", "300", "k1")).toMatchObject({ reserve: "300" });
    expect(await pools().add(tokenId, "alice", "300", "k1")).toMatchObject({ reserve: "300" });
    expect(await op("k1")).toMatchObject({ state: "done", added: true });
    expect(await balance("alice")).toBe("700");
    await expectReserve("300");
  });

  it("at the reserve of a second add: the pool keeps the first only; the retry adds once", async () => {
    await pools().add(tokenId, "alice", "300", "k1");
    failInTransaction(db, "pools", "updateOne");
    await expect(pools().add(tokenId, "alice", "200", "k2")).rejects.toThrow(/crash point/);
    expect(await pool()).toMatchObject({ reserve: "300" });
    expect(await pools().add(tokenId, "alice", "200", "k2")).toMatchObject({ reserve: "500" });
    await expectReserve("500");
  });

  // A plain write is a transaction of its own too: the state `undoing` is not the crash.
  const undone = (_q: unknown, u: unknown) => JSON.stringify(u).includes('"undone"');
  it.each([
    ["the reserve given back", "pools", () => true],
    ["the state undone", "ops", undone],
  ] as const)(
    "a removal that crashed at %s is finished by its retry, once",
    async (_n, c, when) => {
      await pools().add(tokenId, "alice", "300", "k1");
      const crash = failInTransaction(db, c, "updateOne", when);
      await expect(pools().remove(tokenId, "k1")).rejects.toThrow(/crash point/);
      expect(crash.fired()).toBe(true);
      expect(await op("k1")).toMatchObject({ state: "undoing" });
      expect(await pool()).toMatchObject({ reserve: "300" }); // its transfer back went out
      expect(await pools().remove(tokenId, "k1")).toBeNull();
      expect(await pools().remove(tokenId, "k1")).toBeNull();
      expect(await op("k1")).toMatchObject({ state: "undone" });
      expect(await balance("alice")).toBe("1000");
      await expectReserve("0");
    },
  );

  it("forgets finished operations past their retention, never a pending one", async () => {
    await pools().add(tokenId, "alice", "300", "done");
    failInTransaction(db, "ops", "updateOne");
    await expect(pools().add(tokenId, "alice", "1", "open")).rejects.toThrow(/crash point/);
    expect(await pools().prune(new Date(Date.now() + 1000))).toBe(1);
    expect(await op("done")).toBeNull();
    expect(await op("open")).toMatchObject({ state: "pending" });
  });
});
