import { beforeEach, describe, expect, it } from "vitest";
import { TOKEN_EVENTS } from "../../../lib/events/domain";
import type { TransferRequest } from "../../../lib/tokens/ledger";
import { atEachWrite, failInTransaction } from "../../helpers/stores";
import {
  ledgerOn,
  openLedgerStores,
  sumOfBalances,
  type Ledger,
  type LedgerStores,
} from "../../helpers/ledger";

/**
 * The transfer engine without a broker: ERC-20 rules, idempotency by key, and every
 * crash point of a transfer. A crash is a store call that throws inside the transfer's
 * transaction; the engine instance is then dropped and a new one over the same
 * database takes over, as after a restart.
 */

const SUPPLY = 1000n;
let stores: LedgerStores;
let ledger: Ledger;
let tokenId: string;

const transfer = (over: Partial<TransferRequest> = {}): TransferRequest => ({
  kind: "transfer",
  tokenId,
  from: "alice",
  to: "bob",
  amount: "100",
  spender: null,
  key: "k1",
  ...over,
});

async function balances(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const a of ["alice", "bob", "carol"]) out[a] = await ledger.engine.balance(tokenId, a);
  return out;
}

/** A new process on the same database: new engines, then their start-up recovery. */
function restart(): void {
  ledger = ledgerOn(stores);
}

beforeEach(async () => {
  stores = await openLedgerStores();
  ledger = ledgerOn(stores);
  const token = await ledger.registry.create("alice", "create-1", {
    name: "Mint",
    symbol: "MINT",
    decimals: 18,
    initialSupply: SUPPLY.toString(),
  });
  tokenId = token._id;
});

describe("TransferEngine", () => {
  it("moves the amount, writes the event to the outbox and keeps supply = sum of balances", async () => {
    const rec = await ledger.engine.run(transfer());
    expect(rec).toMatchObject({ tokenId, from: "alice", to: "bob", amount: "100" });
    expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
    await ledger.outbox.flush();
    const sent = ledger.published.find(e => e.type === TOKEN_EVENTS.transferred);
    expect(sent?.eventId).toBe(`${TOKEN_EVENTS.transferred}:${rec.id}`);
    expect(await sumOfBalances(stores, tokenId)).toBe(SUPPLY);
  });

  it("answers a repeated key with the first result, and refuses it for another request", async () => {
    const first = await ledger.engine.run(transfer());
    expect(await ledger.engine.run(transfer())).toEqual(first);
    await expect(ledger.engine.run(transfer({ amount: "5" }))).rejects.toMatchObject({
      code: 409,
    });
    expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
  });

  it("refuses what the balance does not cover, moves nothing, and replays the refusal", async () => {
    const big = transfer({ amount: "1001" });
    await expect(ledger.engine.run(big)).rejects.toMatchObject({ type: "INSUFFICIENT_FUNDS" });
    await expect(ledger.engine.run(big)).rejects.toMatchObject({ type: "INSUFFICIENT_FUNDS" });
    expect(await balances()).toEqual({ alice: "1000", bob: "0", carol: "0" });
  });

  it("runs one of many concurrent calls with one key", async () => {
    const all = await Promise.all(Array.from({ length: 10 }, () => ledger.engine.run(transfer())));
    expect(new Set(all.map(r => r.id)).size).toBe(1);
    expect(await balances()).toMatchObject({ alice: "900", bob: "100" });
  });

  it("spends an allowance on transferFrom, and none of it when the balance is short", async () => {
    await ledger.registry.approve(tokenId, "alice", "carol", "300");
    const from = (over: Partial<TransferRequest>) =>
      transfer({ kind: "transferFrom", spender: "carol", to: "carol", ...over });
    await ledger.engine.run(from({ amount: "200", key: "f1" }));
    await expect(ledger.engine.run(from({ amount: "200", key: "f2" }))).rejects.toMatchObject({
      type: "INSUFFICIENT_ALLOWANCE",
    });
    const allowance = await stores.allowances.findOne({ tokenId });
    expect(allowance?.amount).toBe("100");
    expect(await balances()).toEqual({ alice: "800", bob: "0", carol: "200" });
    await ledger.registry.approve(tokenId, "alice", "carol", "5000");
    await expect(ledger.engine.run(from({ amount: "900", key: "f3" }))).rejects.toMatchObject({
      type: "INSUFFICIENT_FUNDS",
    });
    expect((await stores.allowances.findOne({ tokenId }))?.amount).toBe("5000");
    expect(await balances()).toEqual({ alice: "800", bob: "0", carol: "200" });
  });

  it("refuses an unknown token with 404", async () => {
    await expect(ledger.engine.run(transfer({ tokenId: "tok_nope" }))).rejects.toMatchObject({
      code: 404,
    });
  });
});

describe("TransferEngine: a transfer is one transaction", () => {
  // Each write of a transfer, and of a transferFrom, as the place a crash stops it.
  const writes = [
    ["the allowance spent", "allowances", "updateOne"],
    ["the debit", "balances", "updateOne"],
    ["the credit of a new holder", "balances", "insert"],
    ["the journal entry", "journal", "insert"],
    ["the event", "outbox", "insertMany"],
  ] as const;

  atEachWrite(
    writes,
    what => `a crash at ${what} leaves nothing moved, and the retry of its key runs once`,
    async (collection, method) => {
      await ledger.registry.approve(tokenId, "alice", "carol", "300");
      const req = transfer({ kind: "transferFrom", spender: "carol", to: "bob" });
      const before = await stores.allowances.findOne({ tokenId });
      const crash = failInTransaction(stores.database, collection, method);
      await expect(ledger.engine.run(req)).rejects.toThrow(/crash point/);
      expect(crash.fired()).toBe(true);
      expect(await balances()).toEqual({ alice: "1000", bob: "0", carol: "0" });
      expect(await stores.allowances.findOne({ tokenId })).toEqual(before);
      expect(await stores.journal.count({})).toBe(0);
      expect(await stores.outbox.count({ type: TOKEN_EVENTS.transferred })).toBe(0);
      // A new process finds nothing to repair; the client's retry moves the amount once.
      restart();
      const rec = await ledger.engine.run(req);
      expect(await ledger.engine.run(req)).toEqual(rec);
      expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
      expect((await stores.allowances.findOne({ tokenId }))?.amount).toBe("200");
      await ledger.outbox.flush();
      const sent = ledger.published.filter(e => e.type === TOKEN_EVENTS.transferred);
      expect(sent.map(e => e.eventId)).toEqual([`${TOKEN_EVENTS.transferred}:${rec.id}`]);
    },
  );

  it("no reader sees money between two balances while transfers run", async () => {
    const accounts = ["alice", "bob", "carol"];
    let running = true;
    let reads = 0;
    const wrong: bigint[] = [];
    const checker = (async () => {
      while (running) {
        const sum = await sumOfBalances(stores, tokenId);
        reads++;
        if (sum !== SUPPLY) wrong.push(sum);
        await new Promise(resolve => setImmediate(resolve));
      }
    })();
    // In waves of 10, so that reads come between the waves' commits.
    for (let w = 0; w < 30; w++)
      await Promise.all(
        Array.from({ length: 10 }, (_, k) => {
          const i = w * 10 + k;
          const [from, to] = [accounts[i % 3], accounts[(i + 1) % 3]];
          return ledger.engine.run(transfer({ from, to, amount: "1", key: `c${i}` }));
        }),
      );
    running = false;
    await checker;
    expect(reads).toBeGreaterThan(10);
    expect(wrong).toEqual([]);
    expect(await sumOfBalances(stores, tokenId)).toBe(SUPPLY);
    expect(await stores.journal.count({ state: "done" })).toBe(300);
  });

  it("a crash in a token's creation leaves no token and no balance; its retry creates it", async () => {
    const half = { name: "Half", symbol: "HALF", decimals: 0, initialSupply: "50" };
    failInTransaction(stores.database, "balances", "insert");
    await expect(ledger.registry.create("carol", "create-2", half)).rejects.toThrow(/crash point/);
    expect(await stores.tokens.findOne({ symbol: "HALF" })).toBeNull();
    expect(await stores.balances.count({ account: "carol" })).toBe(0);
    restart();
    const made = await ledger.registry.create("carol", "create-2", half);
    expect(await ledger.engine.balance(made._id, "carol")).toBe("50");
    // The creator's retry with its key gets that token, not a 409; another key gets 409.
    expect((await ledger.registry.create("carol", "create-2", half))._id).toBe(made._id);
    await expect(ledger.registry.create("carol", "create-3", half)).rejects.toMatchObject({
      code: 409,
    });
  });
});

describe("TransferEngine retention", () => {
  it("replays a key inside the retention window and forgets one past it", async () => {
    const first = await ledger.engine.run(transfer({ key: "old" }));
    // Aged past the retention by its timestamp, as time would.
    await stores.journal.update(
      { key: "old" },
      { $set: { createdAt: new Date(Date.now() - 8 * 24 * 3600_000).toISOString() } },
    );
    const recent = await ledger.engine.run(transfer({ key: "recent", amount: "1" }));
    expect(await ledger.engine.prune()).toBe(1);
    expect(await ledger.engine.run(transfer({ key: "recent", amount: "1" }))).toEqual(recent);
    const again = await ledger.engine.run(transfer({ key: "old" }));
    expect(again.id).not.toBe(first.id); // forgotten: a new transfer
    expect(await balances()).toMatchObject({ alice: "799", bob: "201" });
  });
});
