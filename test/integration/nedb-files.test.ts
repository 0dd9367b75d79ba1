import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openNedbStore } from "../../lib/store/nedb/nedb-store";

/**
 * What a start finds in a collection's file: a torn last line (a process killed in the
 * middle of an append, a disk that filled) is cut off and the node starts; corruption
 * anywhere else refuses the start, naming the file and the line.
 */

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-nedb-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function recorder() {
  const warnings: Array<{ obj: object; msg: string }> = [];
  return {
    warnings,
    logger: {
      info: () => undefined,
      warn: (obj: object, msg: string) => warnings.push({ obj, msg }),
    },
  };
}

describe("NeDB collection files at start", () => {
  it("cuts an incomplete last line, says how many bytes, and starts with the whole documents", async () => {
    const filename = path.join(dir, "two.db");
    const first = await openNedbStore("two", {}, { filename });
    await first.insert({ _id: "a", n: 1 });
    await first.insert({ _id: "b", n: 2 });
    await first.close();
    const torn = '{"_id":"c","n":3,"pad":"xxxx';
    fs.appendFileSync(filename, torn);

    const { warnings, logger } = recorder();
    const store = await openNedbStore("two", {}, { filename, logger });
    expect((await store.find({}, { sort: { _id: 1 } })).map(d => d._id)).toEqual(["a", "b"]);
    expect(warnings).toEqual([
      {
        obj: { file: filename, bytes: Buffer.byteLength(torn) },
        msg: "Cut an incomplete last line off",
      },
    ]);
    // Writing on goes on from a whole line.
    await store.insert({ _id: "d", n: 4 });
    await store.close();
    const again = await openNedbStore("two", {}, { filename });
    expect(await again.count({})).toBe(3);
    await again.close();
  });

  it("refuses to start on a corrupt line that is not the last, naming the file and line", async () => {
    const filename = path.join(dir, "bad.db");
    fs.writeFileSync(filename, '{"_id":"a","n":1}\n{"_id":"b",oops\n{"_id":"c","n":3}\n');
    await expect(openNedbStore("bad", {}, { filename })).rejects.toThrow(
      `${filename}:2 is corrupt`,
    );
  });
});

describe("NeDB indexes", () => {
  it("follow the collection's spec: an index the file brought and the spec no longer names goes", async () => {
    const filename = path.join(dir, "indexed.db");
    const before = await openNedbStore("indexed", { indexes: ["state", "at"] }, { filename });
    await before.insert({ _id: "a", state: "done", at: 1 });
    await before.close();
    const after = await openNedbStore("indexed", { indexes: ["at"] }, { filename });
    await after.compact();
    await after.close();
    const declared = fs
      .readFileSync(filename, "utf8")
      .split("\n")
      .filter(l => l.includes("$$indexCreated"))
      .map(
        l => (JSON.parse(l) as { $$indexCreated: { fieldName: string } }).$$indexCreated.fieldName,
      );
    expect(declared).toEqual(["at"]);
  });
});
