import { beforeEach, describe, expect, it } from "vitest";
import { MAX_UINT256 } from "../../../lib/shared/amount";
import { amountOf, changeBalance } from "../../../lib/tokens/balance-book";
import { openLedgerStores, type LedgerStores } from "../../helpers/ledger";

/**
 * The balance steps a transfer's transaction is made of (lib/tokens/balance-book.ts), on
 * the tokens database in memory: a credit creates the balance, a debit never overdraws,
 * a credit never passes 2^256−1, and a refused step writes nothing.
 */

let stores: LedgerStores;
beforeEach(async () => {
  stores = await openLedgerStores();
});

const change = (account: string, delta: bigint) =>
  stores.database.transaction(tx => changeBalance(tx.store("balances"), "tok_1", account, delta));

describe("balance steps", () => {
  it("credits a new balance, debits it, and keeps its sort key and version with each write", async () => {
    expect(await amountOf(stores.balances, "tok_1", "alice")).toBe("0");
    expect(await change("alice", 120n)).toMatchObject({ amount: "120", version: 1 });
    const after = await change("alice", -20n);
    expect(after).toMatchObject({ amount: "100", version: 2 });
    expect(after?.sortKey).toBe("100".padStart(78, "0"));
    expect(await amountOf(stores.balances, "tok_1", "alice")).toBe("100");
  });

  it("refuses a debit the balance does not cover: null, and nothing written", async () => {
    await change("alice", 10n);
    expect(await change("alice", -11n)).toBeNull();
    expect(await change("bob", -1n)).toBeNull();
    expect(await stores.balances.find({})).toMatchObject([{ account: "alice", amount: "10" }]);
  });

  it("refuses a credit past 2^256−1 and writes nothing", async () => {
    await change("alice", MAX_UINT256);
    await expect(change("alice", 1n)).rejects.toThrow(/overflow/i);
    expect(await amountOf(stores.balances, "tok_1", "alice")).toBe(MAX_UINT256.toString());
  });

  it("loses no update when many transactions change one balance at once", async () => {
    await Promise.all(Array.from({ length: 200 }, () => change("alice", 1n)));
    expect(await stores.balances.findOne({ account: "alice" })).toMatchObject({
      amount: "200",
      version: 200,
    });
  });
});
