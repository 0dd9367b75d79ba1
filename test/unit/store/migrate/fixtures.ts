import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Doc } from "../../../../lib/store/store";

/**
 * test/fixtures/nedb/: a DATA_DIR written by the NeDB store (tokens and users), and what
 * that store read back from it (expected.json), both made by test/fixtures/nedb/generate.ts.
 */

export const FIXTURES = path.resolve(__dirname, "../../../fixtures/nedb");

/** expected.json, its `{"$$date": ms}` as Dates (as the NeDB store handed them out). */
export function expected(): Record<string, Record<string, Doc[]>> {
  const text = fs.readFileSync(path.join(FIXTURES, "expected.json"), "utf8");
  return JSON.parse(text, (_k, v: unknown) =>
    v !== null && typeof v === "object" && typeof (v as { $$date?: unknown }).$$date === "number"
      ? new Date((v as { $$date: number }).$$date)
      : v,
  ) as Record<string, Record<string, Doc[]>>;
}

/** A fresh copy of the fixture DATA_DIR (the migration moves files), removed by `done`. */
export function copyDataDir(): { dataDir: string; done(): void } {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-migrate-"));
  fs.cpSync(path.join(FIXTURES, "data-dir"), dataDir, { recursive: true });
  return { dataDir, done: () => fs.rmSync(dataDir, { recursive: true, force: true }) };
}

export const byId = (docs: Doc[]): Doc[] =>
  [...docs].sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
