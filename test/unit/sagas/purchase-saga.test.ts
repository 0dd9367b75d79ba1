import { beforeEach, describe, expect, it } from "vitest";
import { AmountError, MAX_UINT256 } from "../../../lib/shared/amount";
import { ClientError } from "../../../lib/shared/errors";
import { ESCROW_ACCOUNT } from "../../../lib/events/market";
import {
  PURCHASE,
  PURCHASE_SAGA,
  royaltyOf,
  sellerShare,
  type PurchaseInput,
} from "../../../lib/sagas/purchase-saga";
import {
  isSkipped,
  stepInput,
  type SagaCall,
  type StepInput,
} from "../../../lib/sagas/saga-definition";
import { SagaEngine } from "../../../lib/sagas/saga-engine";
import { newSagaDoc, SAGA_COLLECTIONS, type SagaDoc } from "../../../lib/sagas/saga-log";
import type { Database } from "../../../lib/store/store";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";

/**
 * The purchase saga's definition: its steps and the params each is called with, read off a
 * saga log as the engine keeps it, and then driven by the real saga engine over a NeDB
 * store in memory, its calls answered by a recorder that can refuse chosen actions.
 */

const INPUT: PurchaseInput = {
  listingId: "lst_1",
  nftId: "nft_1",
  sellerId: "usr_seller",
  buyerId: "usr_buyer",
  tokenId: "tok_1",
  price: "1000",
  royalty: "25",
  royaltyTo: "usr_creator",
};

const sagaOf = (input: PurchaseInput = INPUT): SagaDoc =>
  newSagaDoc(
    PURCHASE_SAGA,
    { userId: input.buyerId, key: "k1", fingerprint: "fp", input },
    { owner: "engine-1", leaseMs: 10_000 },
  );
const step = (name: string) => PURCHASE_SAGA.steps.find(s => s.name === name)!;
/** What the engine hands a step (`undo`: its compensation) by the log as it is. */
const inputOf = (doc: SagaDoc, name: string, undo: boolean) =>
  stepInput(doc, name, undo) as StepInput<PurchaseInput>;
const paramsOf = (doc: SagaDoc, name: string) => step(name).params(inputOf(doc, name, false));
const undoOf = (doc: SagaDoc, name: string) =>
  step(name).compensate!.params(inputOf(doc, name, true), undefined);

describe("PURCHASE_SAGA", () => {
  it("reserves, holds, escrows and moves, then only goes forward", () => {
    expect(PURCHASE_SAGA.type).toBe(PURCHASE);
    expect(
      PURCHASE_SAGA.steps.map(s => [
        s.name,
        s.action,
        s.forwardOnly ?? false,
        s.compensate?.action ?? null,
        s.compensate?.needsResult ?? false,
      ]),
    ).toEqual([
      ["reserve", "market.reserve", false, "market.release", false],
      ["holdNft", "nfts.lock", false, "nfts.unlock", false],
      ["escrow", "tokens.transferInternal", false, "tokens.transferInternal", true],
      ["moveNft", "nfts.transferFrom", false, "nfts.transferFrom", true],
      ["paySeller", "tokens.transferInternal", true, null, false],
      ["payRoyalty", "tokens.transferInternal", true, null, false],
      ["markSold", "market.sell", true, null, false],
      ["releaseNft", "nfts.unlock", true, null, false],
    ]);
  });

  it("calls each step and each undo with the sale's parts: price via escrow, NFT locked by the saga", () => {
    const doc = sagaOf();
    const id = doc._id;
    const tokens = (from: string, to: string, amount: string, key: string) => ({
      tokenId: "tok_1",
      ...{ from, to, amount },
      idempotencyKey: `${id}:${key}`,
    });
    expect(ESCROW_ACCOUNT).toBe("escrow_market");
    expect(PURCHASE_SAGA.steps.map(s => paramsOf(doc, s.name))).toEqual([
      { id: "lst_1", sagaId: id, buyerId: "usr_buyer" },
      { id: "nft_1", owner: "usr_seller", lock: id },
      tokens("usr_buyer", "escrow_market", "1000", "escrow"),
      {
        id: "nft_1",
        from: "usr_seller",
        to: "usr_buyer",
        lock: id,
        idempotencyKey: `${id}:moveNft`,
      },
      tokens("escrow_market", "usr_seller", "975", "paySeller"),
      tokens("escrow_market", "usr_creator", "25", "payRoyalty"),
      // What the sale paid the collection's owner: market.sold tells it.
      { id: "lst_1", sagaId: id, royalty: "25", royaltyTo: "usr_creator" },
      { id: "nft_1", lock: id },
    ]);
    // The undos of the first four: each the reverse, under the undo's key.
    expect(PURCHASE_SAGA.steps.slice(0, 4).map(s => undoOf(doc, s.name))).toEqual([
      { id: "lst_1", sagaId: id },
      { id: "nft_1", lock: id },
      tokens("escrow_market", "usr_buyer", "1000", "escrow:undo"),
      {
        id: "nft_1",
        from: "usr_buyer",
        to: "usr_seller",
        lock: id,
        idempotencyKey: `${id}:moveNft:undo`,
      },
    ]);
  });

  it("skips a payout of 0, and only that one", () => {
    const skipped = (input: PurchaseInput) =>
      PURCHASE_SAGA.steps.filter(s => isSkipped(s, sagaOf(input))).map(s => s.name);
    expect(skipped(INPUT)).toEqual([]);
    expect(skipped({ ...INPUT, royalty: "0" })).toEqual(["payRoyalty"]);
    expect(skipped({ ...INPUT, royalty: "1000" })).toEqual(["paySeller"]);
  });
});

describe("royaltyOf and sellerShare", () => {
  it("floors the royalty, at 1 unit and near 2^256−1", () => {
    expect(royaltyOf("1000", 250)).toBe("25");
    expect(royaltyOf("1", 9999)).toBe("0");
    expect(royaltyOf("1", 10_000)).toBe("1");
    expect(royaltyOf("399", 250)).toBe("9"); // 9.975
    expect(royaltyOf("0", 500)).toBe("0");
    const max = MAX_UINT256.toString();
    expect(royaltyOf(max, 10_000)).toBe(max);
    expect(royaltyOf(max, 0)).toBe("0");
    expect(royaltyOf(max, 1)).toBe((MAX_UINT256 / 10_000n).toString());
    expect(royaltyOf(max, 9999)).toBe(((MAX_UINT256 * 9999n) / 10_000n).toString());
    expect(BigInt(royaltyOf(max, 9999)) < MAX_UINT256).toBe(true);
    expect(() => royaltyOf("1.5", 100)).toThrow(AmountError);
  });

  it("gives the seller the price less the royalty", () => {
    expect(sellerShare(INPUT)).toBe("975");
    expect(sellerShare({ ...INPUT, royalty: "0" })).toBe("1000");
    const max = MAX_UINT256.toString();
    const royalty = royaltyOf(max, 9999);
    const share = sellerShare({ ...INPUT, price: max, royalty });
    expect(BigInt(share) + BigInt(royalty)).toBe(MAX_UINT256);
  });
});

describe("the purchase driven by the saga engine", () => {
  let db: Database;
  /** Each call as "<action> <its key less the saga id>". */
  let calls: string[];
  /** Steps (or "<step>:undo") whose next call is refused, once per entry. */
  let refuse: string[];

  const call: SagaCall = async (action, params, opts) => {
    const key = opts.idempotencyKey.slice(opts.sagaId.length + 1);
    calls.push(`${action} ${key}`);
    const i = refuse.indexOf(key);
    if (i >= 0) {
      refuse.splice(i, 1);
      throw new ClientError("Refused", 422, "NOPE");
    }
    return { action, ...params };
  };

  const purchase = async (input: PurchaseInput = INPUT): Promise<SagaDoc> => {
    const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
    const engine = new SagaEngine(
      db,
      {
        write: async () => undefined,
        has: async () => false,
        writeIn: async () => () => undefined,
      },
      call,
      quiet,
      {
        owner: "engine-1",
        leaseMs: 10_000,
        stepAttempts: 3,
        compensationAttempts: 4,
        backoffMs: 1,
        maxBackoffMs: 2,
      },
    );
    engine.define(PURCHASE_SAGA);
    const started = await engine.start(PURCHASE, input.buyerId, "k1", "fp", input);
    await engine.idle();
    return (await engine.find(started._id))!;
  };

  beforeEach(async () => {
    db = SqliteDatabase.open(SAGA_COLLECTIONS);
    calls = [];
    refuse = [];
  });

  it("makes its calls in order, a royalty of 0 skipped, and answers the listing and the NFT", async () => {
    const doc = await purchase({ ...INPUT, royalty: "0" });
    expect(doc.state).toBe("completed");
    expect(calls).toEqual([
      "market.reserve reserve",
      "nfts.lock holdNft",
      "tokens.transferInternal escrow",
      "nfts.transferFrom moveNft",
      "tokens.transferInternal paySeller",
      "market.sell markSold",
      "nfts.unlock releaseNft",
    ]);
    expect(doc.result).toEqual({
      listing: {
        action: "market.sell",
        id: "lst_1",
        sagaId: doc._id,
        royalty: "0",
        royaltyTo: "usr_creator",
      },
      nft: { action: "nfts.unlock", id: "nft_1", lock: doc._id },
    });
  });

  it("gives everything back, last first, when the NFT cannot move", async () => {
    refuse = ["moveNft"];
    const doc = await purchase();
    expect(doc.state).toBe("compensated");
    expect(calls.slice(4)).toEqual([
      "tokens.transferInternal escrow:undo",
      "nfts.unlock holdNft:undo",
      "market.release reserve:undo",
    ]);
  });

  it("never undoes a sale past the NFT's move: a refused payout is asked again", async () => {
    refuse = ["paySeller"];
    const doc = await purchase();
    expect(doc.state).toBe("completed");
    expect(calls.filter(a => a.includes("paySeller"))).toEqual([
      "tokens.transferInternal paySeller",
      "tokens.transferInternal paySeller:r1",
    ]);
    expect(calls.filter(a => a.includes("undo"))).toEqual([]);
  });
});
