import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  CorruptNedbFileError,
  nedbCollectionsIn,
  parseNedbText,
  readNedbCollection,
} from "../../../../lib/store/migrate/nedb-files";
import { byId, expected, FIXTURES } from "./fixtures";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-nedb-files-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const lines = (...docs: unknown[]): string => docs.map(d => JSON.stringify(d) + "\n").join("");

describe("parseNedbText", () => {
  it("keeps the last line of each _id, drops tombstones and index lines", () => {
    const {
      docs,
      tornBytes,
      lines: n,
    } = parseNedbText(
      lines(
        { $$indexCreated: { fieldName: "email", unique: true } },
        { _id: "a", n: 1 },
        { _id: "b", n: 1 },
        { _id: "a", n: 2 },
        { $$deleted: true, _id: "b" },
        { _id: "c", n: 1 },
        { $$deleted: true, _id: "c" },
        { _id: "c", n: 3 },
        { $$indexRemoved: "email" },
      ),
    );
    expect([...docs.values()]).toEqual([
      { _id: "a", n: 2 },
      { _id: "c", n: 3 },
    ]);
    expect(tornBytes).toBe(0);
    expect(n).toBe(9);
  });

  it("revives {$$date} as Dates at any depth, and keeps big decimal strings as they are", () => {
    const { docs } = parseNedbText(
      '{"_id":"a","at":{"$$date":1796637600000},"steps":[{"t":{"$$date":0}}],"amt":"123456789012345678901234567890.5"}\n',
    );
    const a = docs.get("a")!;
    expect(a.at).toEqual(new Date(1796637600000));
    expect((a.steps as Array<{ t: unknown }>)[0].t).toEqual(new Date(0));
    expect(a.amt).toBe("123456789012345678901234567890.5");
  });

  it("leaves out a torn last line, parseable or not, as the store's start cuts it", () => {
    const torn = parseNedbText(lines({ _id: "a" }) + '{"_id":"b","x":');
    expect([...torn.docs.keys()]).toEqual(["a"]);
    expect(torn.tornBytes).toBe(Buffer.byteLength('{"_id":"b","x":'));
    const whole = parseNedbText(lines({ _id: "a" }) + '{"_id":"b"}');
    expect([...whole.docs.keys()]).toEqual(["a"]);
    expect(parseNedbText("").docs.size).toBe(0);
  });

  it("refuses a corrupt line that is not the last, naming the file and the line", () => {
    const text = lines({ _id: "a" }) + '{"_id":"b",oops\n' + lines({ _id: "c" });
    expect(() => parseNedbText(text, "x.db")).toThrow(CorruptNedbFileError);
    expect(() => parseNedbText(text, "x.db")).toThrow("x.db:2 is corrupt");
  });
});

describe("the files of a service folder", () => {
  it("reads the file, or after a rewrite cut short before its rename, the rewrite", () => {
    const dir = path.join(tmp, "rewrite");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "whole.db"), lines({ _id: "a" }));
    fs.writeFileSync(path.join(dir, "whole.db~"), '{"_id":"a"');
    fs.writeFileSync(path.join(dir, "renamed.db~"), lines({ _id: "r" }));
    fs.writeFileSync(path.join(dir, "LOCK"), "1@host");
    fs.writeFileSync(path.join(dir, "sqlite.db"), "SQLite format 3\0binary");
    fs.writeFileSync(path.join(dir, "empty.db"), "");
    expect(nedbCollectionsIn(dir)).toEqual(["renamed", "whole"]);
    expect([...readNedbCollection(dir, "whole")!.docs.keys()]).toEqual(["a"]);
    const renamed = readNedbCollection(dir, "renamed")!;
    expect(renamed.file).toBe(path.join(dir, "renamed.db~"));
    expect([...renamed.docs.keys()]).toEqual(["r"]);
    expect(readNedbCollection(dir, "none")).toBeNull();
    expect(nedbCollectionsIn(path.join(tmp, "missing"))).toEqual([]);
  });

  it("reads a file larger than its chunks as the whole text parses, lines and characters split across them", () => {
    const dir = path.join(tmp, "big");
    fs.mkdirSync(dir);
    const docs = Array.from({ length: 9000 }, (_, i) => ({
      _id: `d${i % 7000}`,
      s: "ÉtÉ€".repeat(i % 97),
      i,
    }));
    const text = lines(...docs, { $$deleted: true, _id: "d3" }) + '{"_id":"torn","s":"É';
    fs.writeFileSync(path.join(dir, "big.db"), text);
    expect(Buffer.byteLength(text)).toBeGreaterThan(2 * (1 << 20));
    const read = readNedbCollection(dir, "big")!;
    const parsed = parseNedbText(text);
    expect(read.docs.size).toBe(6999);
    expect([...read.docs.entries()]).toEqual([...parsed.docs.entries()]);
    expect(read.tornBytes).toBe(parsed.tornBytes);
    expect(read.lines).toBe(parsed.lines);
  });

  it("gives, from files the NeDB store wrote, exactly what that store read back", () => {
    const want = expected();
    for (const [service, collections] of Object.entries(want)) {
      const dir = path.join(FIXTURES, "data-dir", service);
      expect(nedbCollectionsIn(dir)).toEqual(Object.keys(collections).sort());
      for (const [name, docs] of Object.entries(collections)) {
        const got = readNedbCollection(dir, name)!;
        expect(byId([...got.docs.values()]), `${service}/${name}`).toEqual(docs);
      }
    }
    // What the fixtures hold: updates, removals, a compaction, Dates, a torn tail.
    expect(want.tokens.outbox).toEqual([]);
    expect(want.tokens.tokens.map(d => d._id)).toEqual(["tok-1", "tok-3", "tok-4"]);
    expect(want.tokens.journal[0].at).toBeInstanceOf(Date);
    expect(want.users.users.map(d => d._id)).toEqual(["u1", "u2"]);
    expect(readNedbCollection(path.join(FIXTURES, "data-dir", "users"), "users")!.tornBytes).toBe(
      Buffer.byteLength('{"_id":"u3","email":"c@x'),
    );
  });
});
