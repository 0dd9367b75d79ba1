import { afterAll, describe, expect, it } from "vitest";
import {
  ACTIVITY,
  ACTIVITY_COLLECTIONS,
  ActivityLog,
  pageQueries,
  type ActivityDoc,
  type ListQuery,
} from "../../../lib/activity/activity-log";
import type { ActivityRow } from "../../../lib/events/activity";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import { translateOptions, translateQuery } from "../../../lib/store/sqlite/sql-query";
import { TokenScript } from "../../helpers/channels";

/**
 * lib/activity/activity-log.ts on SQLite in memory: rows numbered in commit order, a
 * redelivery never repeats a row, pages by cursor both ways, and every page an index range.
 */

describe("ActivityLog", () => {
  const db = SqliteDatabase.open(ACTIVITY_COLLECTIONS);
  const log = new ActivityLog(db.store<ActivityDoc>(ACTIVITY));
  afterAll(() => db.close());

  const s = new TokenScript({ creatorId: "usr_ann", totalSupply: "1000" });
  const record = (events: Parameters<typeof ActivityLog.record>[1]) =>
    db.transaction(tx => ActivityLog.record(tx, events));

  /** Every row of `q`, page by page. */
  async function all(q: ListQuery): Promise<ActivityRow[]> {
    const rows: ActivityRow[] = [];
    let cursor = q.cursor;
    for (;;) {
      const page = await log.list({ ...q, cursor });
      rows.push(...page.rows);
      if (!page.next) return rows;
      expect(page.next).toBe(page.rows.at(-1)!.cursor);
      cursor = page.next;
    }
  }

  it("numbers rows in the order they commit, and skips rows it has (a late redelivery)", async () => {
    const created = s.created();
    const first = await record([created, s.transfer("usr_ann", "usr_bob", "10")]);
    expect(first.rows.map(r => [r.type, r.actorId])).toEqual([
      ["token.created", "usr_ann"],
      ["transfer.out", "usr_ann"],
      ["transfer.in", "usr_bob"],
    ]);
    expect(first.actorIds).toEqual(["usr_ann", "usr_bob"]);
    const cursors = first.rows.map(r => r.cursor);
    expect([...cursors].sort()).toEqual(cursors);
    // The same event again, however late: no row twice, no number taken.
    expect(await record([created])).toEqual({ rows: [], actorIds: [] });
    const next = await record([created, s.transfer("usr_bob", "usr_cat", "1")]);
    expect(next.rows.map(r => r.type)).toEqual(["transfer.out", "transfer.in"]);
    expect(next.rows[0]!.cursor > cursors[2]!).toBe(true);
  });

  it("pages an account's history newest first, or oldest first, from any row's cursor", async () => {
    for (let i = 0; i < 23; i++) await record([s.transfer("usr_ann", "usr_dan", "1")]);
    const desc = await all({ actorId: "usr_ann", limit: 4 });
    expect(desc).toHaveLength(25);
    expect(desc.at(-1)!.type).toBe("token.created");
    const asc = await all({ actorId: "usr_ann", order: "asc", limit: 7 });
    expect(asc.map(r => r.id)).toEqual(desc.map(r => r.id).reverse());
    // A row's cursor: strictly after it (asc) or before it (desc).
    const mid = asc[10]!;
    expect(
      (await all({ actorId: "usr_ann", order: "asc", cursor: mid.cursor })).map(r => r.id),
    ).toEqual(asc.slice(11).map(r => r.id));
    const before = await log.list({ actorId: "usr_ann", cursor: mid.cursor, limit: 100 });
    expect(before.rows.map(r => r.id)).toEqual(
      asc
        .slice(0, 10)
        .map(r => r.id)
        .reverse(),
    );
    expect(before.next).toBeNull();
    // The last page says so.
    const exact = await log.list({ actorId: "usr_ann", limit: 25 });
    expect(exact.rows).toHaveLength(25);
    expect(exact.next).toBeNull();
  });

  it("filters by types (merged in order), by token, and shows a token's events once", async () => {
    const approvals = await record([
      {
        eventId: "tokens.approved:x",
        type: "tokens.approved",
        occurredAt: new Date().toISOString(),
        data: { tokenId: s.token.id, owner: "usr_ann", spender: "usr_bob", amount: "5" },
      },
    ]);
    expect(approvals.rows).toHaveLength(2);
    const mixed = await all({ actorId: "usr_ann", types: ["approval", "token.created"], limit: 1 });
    expect(mixed.map(r => r.type)).toEqual(["approval", "token.created"]);
    const onlyIn = await all({ actorId: "usr_bob", tokenId: s.token.id, types: ["transfer.in"] });
    expect(onlyIn).toHaveLength(1);
    const ofToken = await all({ tokenId: s.token.id, types: ["transfer.out"], limit: 10 });
    // Each transfer once: 1 + 1 + 23 of them.
    expect(ofToken).toHaveLength(25);
    expect(ofToken.every(r => r.type === "transfer.out")).toBe(true);
    const everything = await all({ tokenId: s.token.id, limit: 50 });
    expect(everything.map(r => r.type).filter(t => t === "approval")).toHaveLength(1);
  });

  it("finds a transfer by its id, in its token only", async () => {
    const e = s.transfer("usr_ann", "usr_eve", "2");
    await record([e]);
    const row = await log.transfer(s.token.id, e.data.transferId);
    expect(row).toMatchObject({ type: "transfer.out", data: { transferId: e.data.transferId } });
    expect(await log.transfer("tok_other", e.data.transferId)).toBeNull();
    expect(await log.transfer(s.token.id, "trf_none")).toBeNull();
  });

  it("refuses a cursor it did not make and a list of nothing (400)", async () => {
    await expect(log.list({ actorId: "usr_ann", cursor: "nope" })).rejects.toMatchObject({
      code: 400,
      data: [{ field: "cursor" }],
    });
    await expect(log.list({})).rejects.toMatchObject({ code: 400 });
  });

  it("reads every page shape as an index range in order, never a sort", () => {
    const cursor = "00000000abc";
    const shapes: ListQuery[] = [
      { actorId: "a" },
      { actorId: "a", cursor },
      { actorId: "a", cursor, order: "asc" },
      { actorId: "a", types: ["transfer.in", "approval"], cursor },
      { actorId: "a", tokenId: "t", cursor },
      { actorId: "a", tokenId: "t", types: ["transfer.out"], cursor },
      { actorId: "a", collectionId: "c", cursor },
      { actorId: "a", collectionId: "c", types: ["sale.sold"], cursor },
      { tokenId: "t", types: ["transfer.out"], cursor },
      { tokenId: "t", cursor },
      { nftId: "n", cursor },
      { nftId: "n", types: ["sale.sold"], cursor, order: "asc" },
      { collectionId: "c", cursor },
      { collectionId: "c", types: ["listing.created"], cursor },
    ];
    for (const shape of shapes)
      for (const { query, options } of pageQueries(shape)) {
        const where = translateQuery(query);
        const tail = translateOptions(options);
        const sql = `EXPLAIN QUERY PLAN SELECT _id, doc FROM "${ACTIVITY}" WHERE ${where.sql}${tail.sql}`;
        const plan = (
          db.writer.prepare(sql).all(...where.params, ...tail.params) as Array<{ detail: string }>
        )
          .map(r => r.detail)
          .join("; ");
        expect(plan, JSON.stringify(shape)).toMatch(/USING INDEX "?activity:compound:/);
        expect(plan, JSON.stringify(shape)).not.toMatch(/TEMP B-TREE/);
      }
  });
});
