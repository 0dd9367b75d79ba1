import { describe, expect, it } from "vitest";
import {
  decodeCursor,
  encodeCursor,
  rowId,
  rowsOf,
  toActivityRow,
  type DraftRow,
} from "../../../lib/activity/rows";
import {
  SAGA_EVENTS,
  TOKEN_EVENTS,
  type DomainEvent,
  type EventType,
} from "../../../lib/events/domain";
import { MARKET_EVENTS, type Listing } from "../../../lib/events/market";
import { NFT_EVENTS } from "../../../lib/events/nfts";
import { TokenScript } from "../../helpers/channels";

/** lib/activity/rows.ts: which rows each domain event gives, and the cursors. */

const ev = (type: EventType, id: string, data: unknown): DomainEvent => ({
  eventId: `${type}:${id}`,
  type,
  occurredAt: "2026-01-02T03:04:05.000Z",
  data,
});
const brief = (rows: DraftRow[]) => rows.map(r => [r.type, r.actorId, r.lead]);

const listing: Listing = {
  id: "lst_1",
  nftId: "nft_1",
  collectionId: "col_1",
  sellerId: "usr_seller",
  priceTokenId: "tok_p",
  price: "1000",
  state: "sold",
  expiresAt: null,
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-02T00:00:00.000Z",
};

describe("rowsOf", () => {
  it("gives a token's creator token.created, at the token's creation", () => {
    const s = new TokenScript({ creatorId: "usr_ann", symbol: "ANN", totalSupply: "5" });
    const [row, ...rest] = rowsOf(s.created());
    expect(rest).toEqual([]);
    expect(row).toMatchObject({
      type: "token.created",
      actorId: "usr_ann",
      tokenId: s.token.id,
      at: s.token.createdAt,
      lead: true,
      data: { tokenId: s.token.id, symbol: "ANN", totalSupply: "5", decimals: 18, name: "Token" },
    });
  });

  it("gives a transfer's sender transfer.out (the lead row) and its recipient transfer.in", () => {
    const s = new TokenScript({ creatorId: "usr_ann" });
    s.created();
    const e = s.transfer("usr_ann", "usr_bob", "7");
    const rows = rowsOf(e);
    expect(brief(rows)).toEqual([
      ["transfer.out", "usr_ann", true],
      ["transfer.in", "usr_bob", false],
    ]);
    const data = { transferId: e.data.transferId, from: "usr_ann", to: "usr_bob", amount: "7" };
    expect(rows.map(r => r.data)).toEqual([data, data]);
    expect(rows[0]!.transferId).toBe(e.data.transferId);
    expect(rows[1]!.transferId).toBeUndefined();
    expect(rows[0]!.at).toBe(e.data.createdAt);
  });

  it("gives a transfer to oneself one transfer.out with from = to, and a spender when there was one", () => {
    const s = new TokenScript({ creatorId: "usr_ann" });
    s.created();
    const self = s.transfer("usr_ann", "usr_ann", "0");
    expect(brief(rowsOf(self))).toEqual([["transfer.out", "usr_ann", true]]);
    const from = s.transfer("usr_ann", "usr_cat", "1");
    from.data.spender = "usr_bob";
    expect(rowsOf(from)[0]!.data).toEqual({
      transferId: from.data.transferId,
      from: "usr_ann",
      to: "usr_cat",
      amount: "1",
      spender: "usr_bob",
    });
  });

  it("gives an approval to its owner and its spender, once when they are the same", () => {
    const a = { tokenId: "tok_1", owner: "usr_ann", spender: "usr_bob", amount: "3" };
    expect(brief(rowsOf(ev(TOKEN_EVENTS.approved, "a1", a)))).toEqual([
      ["approval", "usr_ann", true],
      ["approval", "usr_bob", false],
    ]);
    const same = ev(TOKEN_EVENTS.approved, "a2", { ...a, spender: "usr_ann" });
    expect(brief(rowsOf(same))).toEqual([["approval", "usr_ann", true]]);
    const nft = ev(NFT_EVENTS.approved, "a3", {
      nftId: "nft_1",
      owner: "usr_ann",
      approved: null,
      version: 2,
    });
    expect(rowsOf(nft).map(r => [r.type, r.actorId, r.nftId])).toEqual([
      ["approval", "usr_ann", "nft_1"],
    ]);
  });

  it("gives NFT mints and moves their rows, with the NFT and its collection", () => {
    const nft = {
      id: "nft_1",
      collectionId: "col_1",
      serial: 3,
      ownerId: "usr_bob",
      approved: null,
      metadata: { name: "Piece" },
      mintedAt: "2026-01-01T00:00:00.000Z",
    };
    const [minted] = rowsOf(ev(NFT_EVENTS.minted, "m", { nft }));
    expect(minted).toMatchObject({
      type: "nft.minted",
      actorId: "usr_bob",
      nftId: "nft_1",
      collectionId: "col_1",
      at: nft.mintedAt,
      data: { nftId: "nft_1", collectionId: "col_1", serial: 3, name: "Piece", to: "usr_bob" },
    });
    const move = {
      nftId: "nft_1",
      collectionId: "col_1",
      from: "usr_bob",
      to: "usr_cat",
      version: 2,
    };
    expect(brief(rowsOf(ev(NFT_EVENTS.transferred, "t", move)))).toEqual([
      ["nft.transferred.out", "usr_bob", true],
      ["nft.transferred.in", "usr_cat", false],
    ]);
  });

  it("gives listings their seller's row, and a sale the seller, the buyer and the royalty's recipient", () => {
    expect(brief(rowsOf(ev(MARKET_EVENTS.listed, "l", { listing })))).toEqual([
      ["listing.created", "usr_seller", true],
    ]);
    expect(brief(rowsOf(ev(MARKET_EVENTS.cancelled, "c", { listing })))).toEqual([
      ["listing.cancelled", "usr_seller", true],
    ]);
    const sold = ev(MARKET_EVENTS.sold, "s", {
      listing,
      buyerId: "usr_buyer",
      royalty: { to: "usr_creator", amount: "25" },
    });
    const rows = rowsOf(sold);
    expect(brief(rows)).toEqual([
      ["sale.sold", "usr_seller", true],
      ["sale.bought", "usr_buyer", false],
      ["royalty", "usr_creator", false],
    ]);
    expect(rows[0]).toMatchObject({ nftId: "nft_1", collectionId: "col_1", tokenId: "tok_p" });
    expect(rows[0]!.data).toMatchObject({ price: "1000", buyer: "usr_buyer", royalty: "25" });
    expect(rows[2]!.data).toMatchObject({ amount: "25" });
    // No royalty row for a royalty of 0, nor for an event written before royalties were told.
    const none = ev(MARKET_EVENTS.sold, "s0", {
      listing,
      buyerId: "usr_buyer",
      royalty: { to: "usr_creator", amount: "0" },
    });
    expect(rowsOf(none).map(r => r.type)).toEqual(["sale.sold", "sale.bought"]);
    expect(
      rowsOf(ev(MARKET_EVENTS.sold, "s1", { listing, buyerId: "usr_buyer" })).map(r => r.type),
    ).toEqual(["sale.sold", "sale.bought"]);
    // A collection owner selling their own NFT: a sale.sold and a royalty, distinct ids.
    const own = rowsOf(
      ev(MARKET_EVENTS.sold, "s2", {
        listing,
        buyerId: "usr_buyer",
        royalty: { to: "usr_seller", amount: "1" },
      }),
    );
    expect(own.map(r => r.type)).toEqual(["sale.sold", "sale.bought", "royalty"]);
    expect(new Set(own.map(r => r.id)).size).toBe(3);
  });

  it("gives a launch's creator its end, and nothing for other sagas or events no history shows", () => {
    const end = (type: EventType, sagaType: string, state: string) =>
      rowsOf(
        ev(type, `${sagaType}${state}`, { sagaId: "sag_1", sagaType, userId: "usr_ann", state }),
      );
    expect(end(SAGA_EVENTS.completed, "launch", "completed").map(r => [r.type, r.data])).toEqual([
      ["launch.completed", { sagaId: "sag_1", state: "completed" }],
    ]);
    expect(end(SAGA_EVENTS.compensated, "launch", "compensated")[0]!.type).toBe(
      "launch.compensated",
    );
    expect(end(SAGA_EVENTS.completed, "purchase", "completed")).toEqual([]);
    expect(end(SAGA_EVENTS.failed, "launch", "failed")).toEqual([]);
    expect(rowsOf(ev(TOKEN_EVENTS.deleted, "d", { tokenId: "tok_1" }))).toEqual([]);
    expect(rowsOf(ev(TOKEN_EVENTS.created, "bad", {}))).toEqual([]);
  });

  it("derives each row's id from the event, the account and the type: a redelivery repeats it", () => {
    const s = new TokenScript({ creatorId: "usr_ann" });
    s.created();
    const e = s.transfer("usr_ann", "usr_bob", "1");
    expect(rowsOf(e).map(r => r.id)).toEqual(rowsOf(structuredClone(e)).map(r => r.id));
    expect(rowId(e.eventId, "usr_ann", "transfer.out")).toBe(rowsOf(e)[0]!.id);
    expect(rowId(e.eventId, "usr_bob", "transfer.out")).not.toBe(rowsOf(e)[0]!.id);
    expect(rowsOf(e)[0]!.id).toMatch(/^act_[A-Za-z0-9_-]{22}$/);
  });
});

describe("cursors", () => {
  it("are fixed width and sort as strings in the order of their numbers", () => {
    const seqs = [0, 1, 35, 36, 1295, 1_000_000, Number.MAX_SAFE_INTEGER];
    const cursors = seqs.map(encodeCursor);
    expect(new Set(cursors.map(c => c.length))).toEqual(new Set([11]));
    expect([...cursors].sort()).toEqual(cursors);
    expect(cursors.map(decodeCursor)).toEqual(seqs);
  });

  it("refuse what no row's cursor looks like", () => {
    for (const bad of [
      "",
      "abc",
      "0000000000A",
      "00000000001x",
      " 0000000001",
      "zzzzzzzzzzz",
      "-0000000001",
    ])
      expect(decodeCursor(bad)).toBeNull();
  });

  it("are what a stored row answers, with no internal field", () => {
    const row = toActivityRow({
      _id: "act_x",
      seq: 42,
      type: "transfer.in",
      at: "2026-01-01T00:00:00.000Z",
      actorId: "usr_bob",
      tokenId: "tok_1",
      data: { amount: "1" },
      lead: 1,
      eventId: "e",
    } as Parameters<typeof toActivityRow>[0]);
    expect(row).toEqual({
      id: "act_x",
      cursor: encodeCursor(42),
      type: "transfer.in",
      at: "2026-01-01T00:00:00.000Z",
      actorId: "usr_bob",
      tokenId: "tok_1",
      data: { amount: "1" },
    });
  });
});
