import { beforeEach, describe, expect, it } from "vitest";
import { TOKEN_EVENTS } from "../../../lib/events/domain";
import type { TransferRequest } from "../../../lib/tokens/ledger";
import { failOnce } from "../../helpers/stores";
import {
  ledgerOn,
  openLedgerStores,
  sumOfBalances,
  type Ledger,
  type LedgerStores,
} from "../../helpers/ledger";

/**
 * The transfer engine without a broker: ERC-20 rules, idempotency by key, and every
 * crash point of a transfer. A crash is a store call that throws; the engine instance is
 * then dropped and a new one over the same stores recovers, as after a restart.
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
async function restart(): Promise<void> {
  await ledger.engine.idle();
  ledger = ledgerOn(stores);
  await ledger.registry.recover();
  await ledger.engine.recover(true);
  await ledger.engine.idle();
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

  it("spends an allowance on transferFrom and gives it back when the balance is short", async () => {
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
  });

  it("refuses an unknown token with 404", async () => {
    await expect(ledger.engine.run(transfer({ tokenId: "tok_nope" }))).rejects.toMatchObject({
      code: 404,
    });
  });
});

describe("TransferEngine crash points", () => {
  it("journal written, nothing debited: recovery fails the entry; its key answers 409, moves nothing", async () => {
    failOnce(stores.balances, "updateOne");
    await expect(ledger.engine.run(transfer())).rejects.toThrow(/crash point/);
    expect(await stores.journal.count({ state: "pending" })).toBe(1);

    await restart();
    // Never deleted: a later run of the same key must not pay what the client gave up on.
    expect((await stores.journal.findOne({ key: "k1" }))?.state).toBe("failed");
    await expect(ledger.engine.run(transfer())).rejects.toMatchObject({
      code: 409,
      message: expect.stringMatching(/new Idempotency-Key/),
    });
    expect(await balances()).toEqual({ alice: "1000", bob: "0", carol: "0" });
    await ledger.engine.run(transfer({ key: "k2" }));
    expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
  });

  it("a transfer that moves nothing, published but not marked done, keeps its id after a restart", async () => {
    failOnce(stores.journal, "update", (_q, u) => JSON.stringify(u).includes('"done"'));
    const self = transfer({ to: "alice", key: "self" });
    const zero = transfer({ amount: "0", key: "zero" });
    const first = [await ledger.engine.run(self), await ledger.engine.run(zero)];
    await ledger.engine.idle();
    await ledger.outbox.flush(); // published, so the outbox no longer proves them
    expect(await stores.outbox.count({})).toBe(0);

    await restart();
    expect([await ledger.engine.run(self), await ledger.engine.run(zero)]).toEqual(first);
    expect(await balances()).toEqual({ alice: "1000", bob: "0", carol: "0" });
  });

  it("debited, not credited: recovery credits, publishes and the key answers that transfer", async () => {
    failOnce(stores.balances, "insert"); // bob's first balance: the credit
    await expect(ledger.engine.run(transfer())).rejects.toThrow(/crash point/);
    expect(await balances()).toMatchObject({ alice: "900", bob: "0" });
    const pending = await stores.journal.findOne({ key: "k1" });

    await restart();
    expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
    expect(await sumOfBalances(stores, tokenId)).toBe(SUPPLY);
    expect((await stores.journal.findOne({ key: "k1" }))?.state).toBe("done");
    expect((await ledger.engine.run(transfer())).id).toBe(pending?._id);
    await ledger.outbox.flush();
    expect(ledger.published.map(e => e.eventId)).toContain(
      `${TOKEN_EVENTS.transferred}:${pending?._id}`,
    );
    expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
  });

  it("both balances moved, event not written: recovery writes the event once", async () => {
    failOnce(stores.outbox, "insert", doc => doc.type === TOKEN_EVENTS.transferred);
    await expect(ledger.engine.run(transfer())).rejects.toThrow(/crash point/);
    const pending = await stores.journal.findOne({ key: "k1" });

    await restart();
    await ledger.outbox.flush();
    const events = ledger.published.filter(e => e.type === TOKEN_EVENTS.transferred);
    expect(events.map(e => e.eventId)).toEqual([`${TOKEN_EVENTS.transferred}:${pending?._id}`]);
    expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
    expect((await ledger.engine.run(transfer())).id).toBe(pending?._id);
  });

  it("event written, `done` not: the retry answers the transfer and nothing moves twice", async () => {
    failOnce(stores.journal, "update", (_q, u) => JSON.stringify(u).includes('"done"'));
    const rec = await ledger.engine.run(transfer());
    await ledger.engine.idle();
    expect((await stores.journal.findOne({ key: "k1" }))?.state).toBe("pending");

    await restart();
    expect((await stores.journal.findOne({ key: "k1" }))?.state).toBe("done");
    expect(await ledger.engine.run(transfer())).toEqual(rec);
    expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
  });

  it("allowance spent, nothing debited: recovery gives the allowance back", async () => {
    await ledger.registry.approve(tokenId, "alice", "carol", "300");
    failOnce(stores.balances, "updateOne");
    const req = transfer({ kind: "transferFrom", spender: "carol", to: "carol", amount: "200" });
    await expect(ledger.engine.run(req)).rejects.toThrow(/crash point/);
    expect((await stores.allowances.findOne({ tokenId }))?.amount).toBe("100");

    await restart();
    expect((await stores.allowances.findOne({ tokenId }))?.amount).toBe("300");
    expect(await balances()).toEqual({ alice: "1000", bob: "0", carol: "0" });
  });

  it("a token half created is finished at start: active, its creator holding the supply", async () => {
    failOnce(stores.tokens, "updateOne", (_q, u) => JSON.stringify(u).includes('"active"'));
    await expect(
      ledger.registry.create("carol", "create-2", {
        name: "Half",
        symbol: "HALF",
        decimals: 0,
        initialSupply: "50",
      }),
    ).rejects.toThrow(/crash point/);

    await restart();
    const half = await stores.tokens.findOne({ symbol: "HALF" });
    expect(half?.state).toBe("active");
    expect(await ledger.engine.balance(half!._id, "carol")).toBe("50");
    // The creator's retry with its key gets that token, not a 409.
    const again = await ledger.registry.create("carol", "create-2", {
      name: "Half",
      symbol: "HALF",
      decimals: 0,
      initialSupply: "50",
    });
    expect(again._id).toBe(half?._id);
  });
});

describe("TransferEngine leases: two engines over one database", () => {
  /** Holds the next balance write of `marker` until `release()`: an owner stalled mid-step. */
  function stallNext(marker: "d" | "c") {
    let release!: () => void;
    const gate = new Promise<void>(resolve => (release = resolve));
    let reached!: () => void;
    const arrived = new Promise<void>(resolve => (reached = resolve));
    let armed = true;
    /** Holds the call when `doc` writes the marker, once. */
    const gateIf = async (doc: unknown) => {
      if (!armed || !JSON.stringify(doc).includes(`":"${marker}"`)) return;
      armed = false;
      reached();
      await gate;
    };
    const real = stores.balances.updateOne.bind(stores.balances);
    const realInsert = stores.balances.insert.bind(stores.balances);
    stores.balances.updateOne = async (q, u) => (await gateIf(u), real(q, u));
    stores.balances.insert = async doc => (await gateIf(doc), realInsert(doc));
    return { arrived, release };
  }

  const LEASE = 150;
  const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

  it("takes nothing over while the owner's lease runs", async () => {
    const owner = ledgerOn(stores, { leaseMs: 60_000 });
    const other = ledgerOn(stores, { leaseMs: 60_000 });
    const stall = stallNext("d");
    const run = owner.engine.run(transfer());
    await stall.arrived;
    expect(await other.engine.recover()).toBe(0);
    stall.release();
    await run;
    expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
  });

  /** An owner's transfer held at its `marker` step past its lease, and another engine's sweep. */
  async function stalledPastLease(marker: "d" | "c") {
    const owner = ledgerOn(stores, { leaseMs: LEASE });
    const other = ledgerOn(stores, { leaseMs: LEASE });
    const stall = stallNext(marker);
    const run = owner.engine.run(transfer());
    await stall.arrived;
    await sleep(LEASE + 50);
    return { other, stall, run, recovered: await other.engine.recover() };
  }

  it("an owner stalled before its debit past the lease: the other fails it, the owner moves nothing", async () => {
    const { other, stall, run, recovered } = await stalledPastLease("d");
    expect(recovered).toBe(1);
    stall.release();
    await expect(run).rejects.toMatchObject({ code: 503, name: "TakenOverError" });
    expect(await balances()).toEqual({ alice: "1000", bob: "0", carol: "0" });
    expect((await stores.journal.findOne({ key: "k1" }))?.state).toBe("failed");
    await expect(other.engine.run(transfer())).rejects.toMatchObject({ code: 409 });
    expect(await sumOfBalances(stores, tokenId)).toBe(SUPPLY);
  });

  it("an owner stalled between debit and credit: the other completes it, the owner credits nothing twice", async () => {
    const { other, stall, run, recovered } = await stalledPastLease("c");
    expect(recovered).toBe(1);
    await other.engine.idle();
    stall.release();
    const rec = await run;
    expect(await balances()).toEqual({ alice: "900", bob: "100", carol: "0" });
    expect(await other.engine.run(transfer())).toEqual(rec);
    expect(await sumOfBalances(stores, tokenId)).toBe(SUPPLY);
  });
});

describe("TransferEngine retention", () => {
  it("replays a key inside the retention window and forgets one past it", async () => {
    const first = await ledger.engine.run(transfer({ key: "old" }));
    await ledger.engine.idle();
    // Aged past the retention by its timestamp, as time would.
    await stores.journal.update(
      { key: "old" },
      { $set: { createdAt: new Date(Date.now() - 8 * 24 * 3600_000).toISOString() } },
    );
    const recent = await ledger.engine.run(transfer({ key: "recent", amount: "1" }));
    await ledger.engine.idle();
    expect(await ledger.engine.prune()).toBe(1);
    expect(await ledger.engine.run(transfer({ key: "recent", amount: "1" }))).toEqual(recent);
    const again = await ledger.engine.run(transfer({ key: "old" }));
    expect(again.id).not.toBe(first.id); // forgotten: a new transfer
    expect(await balances()).toMatchObject({ alice: "799", bob: "201" });
    // Its markers went with it: the next writes of those balances drop them.
    await ledger.engine.run(transfer({ key: "later", amount: "1" }));
    const alice = await stores.balances.findOne({ tokenId, account: "alice" });
    expect(Object.keys(alice?.ops ?? {})).not.toContain(first.id);
  });
});
