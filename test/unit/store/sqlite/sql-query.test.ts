import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { jsonPath, translateOptions, translateQuery } from "../../../../lib/store/sqlite/sql-query";
import { applyUpdate } from "../../../../lib/store/sqlite/update-ops";
import { SqliteDatabase } from "../../../../lib/store/sqlite/sqlite-database";
import { decodeDoc, encodeDoc } from "../../../../lib/store/sqlite/sqlite-collection";

/** The Query → SQL translation and the update operators of the SQLite store, alone. */

describe("SQLite query translation", () => {
  it("quotes every key of a path and indexes arrays", () => {
    expect(jsonPath("a")).toBe('$."a"');
    expect(jsonPath("pending.0")).toBe('$."pending"[0]');
    expect(jsonPath('ops.x"y')).toBe('$."ops"."x""y"');
  });

  it("binds values, never splices them in", () => {
    const q = translateQuery({ _id: "x' OR 1=1 --", n: { $gte: 1, $lt: 5 } });
    expect(q.sql).not.toContain("OR 1=1");
    expect(q.params).toEqual(["x' OR 1=1 --", 1, 5]);
    expect(q.sql).toContain("_id = ?");
  });

  it("compares only values of one type, as MongoDB and NeDB do", () => {
    expect(translateQuery({ amount: { $lt: "5" } }).sql).toContain("typeof(");
    expect(translateQuery({ amount: { $lt: "5" } }).sql).toContain("= 'text'");
    expect(translateQuery({ n: { $gt: 5 } }).sql).toContain("IN ('integer', 'real')");
  });

  it("booleans through json_type (node:sqlite binds no booleans); $in of none matches none", () => {
    expect(translateQuery({ flag: true })).toEqual({
      sql: `json_type(doc, '$."flag"') = 'true'`,
      params: [],
    });
    expect(translateQuery({ _id: { $in: [] } }).sql).toBe("0");
    expect(translateQuery({}).sql).toBe("1");
  });

  it("refuses an operator it does not know rather than match wrongly", () => {
    expect(() => translateQuery({ n: { $where: "1" } })).toThrow(/\$where/);
    expect(() => translateQuery({ $nor: [] })).toThrow(/\$nor/);
  });

  it("sorts, limits and offsets in SQL", () => {
    expect(translateOptions({ sort: { at: -1, _id: 1 }, limit: 10, offset: 20 })).toEqual({
      sql: ` ORDER BY json_extract(doc, '$."at"') DESC, _id ASC LIMIT ? OFFSET ?`,
      params: [10, 20],
    });
    expect(translateOptions({ offset: 3 }).params).toEqual([-1, 3]);
  });

  it("index expressions are the ones the queries use", () => {
    const db = SqliteDatabase.open({ things: { unique: ["key"], sparse: ["pending"] } });
    const plan = (sql: string, ...params: Array<string | number>) =>
      (db.writer.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>)
        .map(r => r.detail)
        .join("; ");
    const eq = translateQuery({ key: "k" });
    expect(plan(`SELECT doc FROM things WHERE ${eq.sql}`, ...(eq.params as string[]))).toMatch(
      /USING INDEX "?things:unique:key/,
    );
    const sparse = translateQuery({ pending: { $exists: true } });
    expect(plan(`SELECT doc FROM things WHERE ${sparse.sql}`)).toMatch(/things:sparse:pending/);
    void db.close();
  });
});

describe("SQLite update operators", () => {
  const doc = { _id: "d", n: 1, list: ["a", "b"], nested: { x: 1 } };

  it("leaves the original alone and applies each operator", () => {
    const out = applyUpdate(doc, {
      $set: { "nested.y": 2, "deep.er": true },
      $unset: { "nested.x": true },
      $inc: { n: 2, fresh: 1 },
      $push: { list: { $each: ["c", "d"] } },
      $addToSet: { tags: "t" },
      $max: { n: 10 },
    });
    expect(out).toEqual({
      _id: "d",
      n: 10,
      fresh: 1,
      list: ["a", "b", "c", "d"],
      nested: { y: 2 },
      deep: { er: true },
      tags: ["t"],
    });
    expect(doc).toEqual({ _id: "d", n: 1, list: ["a", "b"], nested: { x: 1 } });
  });

  it("$pull by value, by $in, and by a condition on the elements' fields", () => {
    const d = { _id: "p", xs: ["a", "b", "c"], ws: [{ address: "1" }, { address: "2" }] };
    expect(applyUpdate(d, { $pull: { xs: { $in: ["a", "c"] } } }).xs).toEqual(["b"]);
    expect(applyUpdate(d, { $pull: { xs: "b" } }).xs).toEqual(["a", "c"]);
    expect(applyUpdate(d, { $pull: { ws: { address: "1" } } }).ws).toEqual([{ address: "2" }]);
  });

  it("refuses to change an _id or $inc a string", () => {
    expect(() => applyUpdate(doc, { $set: { _id: "other" } })).toThrow(/_id/);
    expect(() => applyUpdate({ _id: "s", a: "1" }, { $inc: { a: 1 } })).toThrow(/number/);
  });

  it("keeps Dates as Dates through the JSON column", () => {
    const at = new Date("2026-01-02T03:04:05.678Z");
    const back = decodeDoc<{ _id: string; at: Date; s: string }>(
      encodeDoc({ _id: "t", at, s: "$$date" }),
    );
    expect(back.at).toBeInstanceOf(Date);
    expect(back.at.toISOString()).toBe(at.toISOString());
    expect(back.s).toBe("$$date");
  });
});

describe("a SQLite file that is not a database", () => {
  it("refuses the start, naming the file", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-corrupt-"));
    try {
      const file = path.join(dir, "svc.sqlite");
      fs.writeFileSync(file, "this is not a database file ".repeat(200));
      expect(() => SqliteDatabase.open({ items: {} }, { filename: file })).toThrow(
        new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is corrupt`),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
