import { beforeEach, describe, expect, it } from "vitest";
import { AmountError, MAX_UINT256 } from "../../../lib/shared/amount";
import { BalanceBook } from "../../../lib/tokens/balance-book";
import {
  balanceId,
  TakenOverError,
  type JournalDoc,
  type JournalState,
} from "../../../lib/tokens/ledger";
import type { Query } from "../../../lib/store/store";
import { openLedgerStores, type LedgerStores } from "../../helpers/ledger";

/**
 * The balances of the tokens write model without a broker, over real NeDB stores in
 * memory. Two books over the same stores are two processes on one database: each has its
 * own cache and lock, and only the balance's compare-and-set keeps them apart.
 */

const TOK = "tok_1";
let stores: LedgerStores;
let live: Set<string>;
let book: BalanceBook;

const newBook = () => new BalanceBook(stores.balances, stores.journal, id => live.has(id));
const stored = (account: string) => stores.balances.findOne({ _id: balanceId(TOK, account) });

/** A journal entry in `state`, as the transfer engine writes one before anything moves. */
async function entry(id: string, state: JournalState): Promise<void> {
  const doc: JournalDoc = {
    _id: id,
    key: `key-${id}`,
    fingerprint: "fp",
    kind: "transfer",
    tokenId: TOK,
    from: "alice",
    to: "bob",
    amount: "1",
    spender: null,
    state,
    error: null,
    createdAt: new Date().toISOString(),
  };
  await stores.journal.insert(doc);
}

beforeEach(async () => {
  stores = await openLedgerStores();
  live = new Set();
  book = newBook();
});

describe("BalanceBook.change", () => {
  it("credits a new balance, debits it, and writes each step's marker with its change", async () => {
    expect(await book.amount(TOK, "alice")).toBe("0");
    const credited = await book.change(TOK, "alice", 100n, "j1", "c");
    expect(credited).toMatchObject({ amount: "100", version: 1, ops: { j1: "c" } });
    const debited = await book.change(TOK, "alice", -30n, "j2", "d");
    expect(debited).toMatchObject({ amount: "70", version: 2, ops: { j2: "d" } });
    expect(await stored("alice")).toMatchObject({ amount: "70", sortKey: "70".padStart(78, "0") });
    expect(await newBook().amount(TOK, "alice")).toBe("70");
  });

  it("applies a step already marked only once, also when the same step races itself", async () => {
    await book.change(TOK, "alice", 100n, "j1", "c");
    const first = await book.change(TOK, "alice", -10n, "j2", "d");
    expect(await book.change(TOK, "alice", -10n, "j2", "d")).toEqual(first);
    const other = newBook();
    await Promise.all([
      book.change(TOK, "alice", -5n, "j3", "d"),
      other.change(TOK, "alice", -5n, "j3", "d"),
      other.change(TOK, "alice", -5n, "j3", "d"),
    ]);
    expect((await stored("alice"))?.amount).toBe("85");
  });

  it("refuses a debit the balance does not cover: null, and nothing written", async () => {
    await book.change(TOK, "alice", 100n, "j1", "c");
    expect(await book.change(TOK, "alice", -101n, "j2", "d")).toBeNull();
    expect(await book.change(TOK, "bob", -1n, "j3", "d")).toBeNull();
    expect(await stored("alice")).toMatchObject({ amount: "100", version: 1, ops: { j1: "c" } });
    expect(await stored("bob")).toBeNull();
  });

  it("checks `need` without moving anything (a transfer to oneself)", async () => {
    await book.change(TOK, "alice", 100n, "j1", "c");
    expect(await book.change(TOK, "alice", 0n, "j2", "n", 101n)).toBeNull();
    const marked = await book.change(TOK, "alice", 0n, "j3", "n", 100n);
    expect(marked).toMatchObject({ amount: "100", ops: { j3: "n" } });
    expect(marked?.ops).not.toHaveProperty("j2");
  });

  it("never overdraws under concurrent debits from two processes", async () => {
    await book.change(TOK, "alice", 100n, "j0", "c");
    const other = newBook();
    await other.amount(TOK, "alice"); // both caches hold 100
    for (let i = 0; i < 10; i++) live.add(`d${i}`); // being applied: their markers stay
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? book : other).change(TOK, "alice", -30n, `d${i}`, "d"),
      ),
    );
    expect(results.filter(r => r !== null)).toHaveLength(3);
    const doc = await stored("alice");
    expect(doc?.amount).toBe("10");
    expect(Object.values(doc?.ops ?? {}).filter(m => m === "d")).toHaveLength(3);
  });

  it("debits what another process credited after this one cached the balance", async () => {
    await book.change(TOK, "alice", 10n, "j1", "c"); // cached: 10
    await newBook().change(TOK, "alice", 50n, "j2", "c");
    expect(await book.change(TOK, "alice", -60n, "j3", "d")).toMatchObject({ amount: "0" });
  });

  it("refuses a credit past 2^256−1 and writes nothing", async () => {
    await book.change(TOK, "alice", MAX_UINT256, "j1", "c");
    // The method's comment says null here; the sum goes through checkedAdd, which throws.
    await expect(book.change(TOK, "alice", 1n, "j2", "c")).rejects.toThrow(AmountError);
    expect(await stored("alice")).toMatchObject({ amount: MAX_UINT256.toString(), version: 1 });
  });
});

describe("BalanceBook.fence", () => {
  it("fences an entry before its step: the owner's step is refused and moves nothing", async () => {
    await book.change(TOK, "alice", 100n, "j0", "c");
    const recovery = newBook();
    expect(await recovery.fence(TOK, "alice", "j1")).toBe("x");
    await expect(book.change(TOK, "alice", -10n, "j1", "d")).rejects.toBeInstanceOf(TakenOverError);
    expect(await stored("alice")).toMatchObject({ amount: "100", ops: { j1: "x" } });
    // On a balance that does not exist yet, too: the credit side of the same entry.
    expect(await recovery.fence(TOK, "bob", "j1")).toBe("x");
    await expect(book.change(TOK, "bob", 10n, "j1", "c")).rejects.toMatchObject({ code: 503 });
    expect((await stored("bob"))?.amount).toBe("0");
  });

  it("answers the step's marker when the owner got there first, and fences nothing", async () => {
    await book.change(TOK, "alice", 100n, "j0", "c");
    await book.change(TOK, "alice", -10n, "j1", "d");
    expect(await newBook().fence(TOK, "alice", "j1")).toBe("d");
    expect(await book.change(TOK, "alice", -10n, "j1", "d")).toMatchObject({ amount: "90" });
  });

  it("lets exactly one of a racing step and fence happen", async () => {
    await book.change(TOK, "alice", 100n, "j0", "c");
    const [step, fence] = await Promise.allSettled([
      book.change(TOK, "alice", -10n, "j1", "d"),
      newBook().fence(TOK, "alice", "j1"),
    ]);
    const marker = (await stored("alice"))?.ops.j1;
    if (marker === "d") {
      expect(fence).toEqual({ status: "fulfilled", value: "d" });
      expect((await stored("alice"))?.amount).toBe("90");
    } else {
      expect(marker).toBe("x");
      expect(step.status).toBe("rejected");
      expect((await stored("alice"))?.amount).toBe("100");
    }
  });
});

describe("BalanceBook markers", () => {
  it("drops the markers of settled entries at the balance's next write, keeps pending ones", async () => {
    await entry("jpending", "pending");
    await entry("jdone", "done");
    live.add("jsettled").add("jlive"); // being applied here: their markers stay, unasked
    for (const id of ["jpending", "jdone", "jsettled", "jlive", "jpruned"])
      await book.change(TOK, "alice", 1n, id, "c"); // jpruned: no entry, pruned long ago
    book.markSettled("jsettled"); // its `done` is written
    live.delete("jsettled");
    const asked: Query[] = [];
    const find = stores.journal.find.bind(stores.journal);
    stores.journal.find = (q, o) => (asked.push(q), find(q, o));
    const doc = await book.change(TOK, "alice", 1n, "jnext", "c");
    expect((await stored("alice"))?.ops).toEqual({ jlive: "c", jnext: "c", jpending: "c" });
    expect(doc?.amount).toBe("6");
    // Only the markers it knows nothing of are looked up in the journal.
    expect(asked).toEqual([{ _id: { $in: ["jpending", "jpruned"] } }]);
  });

  it("stops answering from its cache for a token it was told is gone", async () => {
    await book.change(TOK, "alice", 100n, "j1", "c");
    await stores.balances.remove({ tokenId: TOK });
    expect(await book.read(balanceId(TOK, "alice"), false)).toMatchObject({ amount: "100" });
    book.forgetToken(TOK);
    expect(await book.read(balanceId(TOK, "alice"), false)).toBeNull();
  });
});
