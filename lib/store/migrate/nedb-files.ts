import fs from "node:fs";
import path from "node:path";
import type { Doc } from "../store";

/**
 * Reads a collection file written by the NeDB store (lib/store/nedb/) without NeDB, for
 * the migration to another store. The format, as NeDB and the store's AppendLog write it
 * (no framing of its own: AppendLog appends NeDB's lines as they are, and no
 * afterSerialization hook is set):
 *
 *  - one JSON document per line, each line ending with "\n";
 *  - a Date anywhere in a document is `{"$$date": <ms>}`;
 *  - an insert or an update appends the whole document; a later line with the same `_id`
 *    replaces an earlier one;
 *  - a removal appends `{"$$deleted": true, "_id": …}`;
 *  - `{"$$indexCreated": {fieldName, unique, sparse}}` and `{"$$indexRemoved": field}`
 *    lines describe indexes (the new store takes its indexes from the spec: skipped);
 *  - a compaction writes the whole file anew to `<file>~` and renames it over `<file>`:
 *    when `<file>` is missing and `<file>~` is there, the rewrite was interrupted after
 *    NeDB removed nothing yet, and `<file>~` is the collection (NeDB's own rule,
 *    ensureDatafileIntegrity); when both are there, `<file>` is whole and `<file>~` a
 *    rewrite cut short.
 *
 * A last line without its "\n" is a torn append (a process killed mid-write, a full
 * disk): it was never acknowledged and the present store cuts it off at start
 * (cutTornTail), so it is left out here too, whether or not it parses. A line that is not
 * JSON anywhere else is corruption, which the present store refuses to start on: so
 * does this, naming the file and the line.
 */

export interface NedbCollectionFile {
  /** The live documents, by `_id`, in the order of their last write. */
  docs: Map<string, Doc>;
  /** The file that was read (`<name>.db`, or `<name>.db~` after an interrupted rewrite). */
  file: string;
  /** Bytes of a torn last line left out (0 when the file ends with a whole line). */
  tornBytes: number;
  /** Lines read: documents, tombstones and index lines. */
  lines: number;
}

/** NeDB's deserialization: `{"$$date": n}` becomes a Date, at any depth. */
function revive(this: unknown, key: string, value: unknown): unknown {
  if (key === "$$date" && typeof value === "number") return new Date(value);
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const d = (value as { $$date?: unknown }).$$date;
    if (d instanceof Date) return d;
  }
  return value;
}

export class CorruptNedbFileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
  ) {
    super(`${file}:${line} is corrupt; refusing to migrate it`);
    this.name = "CorruptNedbFileError";
  }
}

/** The file that holds a collection, `<name>.db` or its interrupted rewrite; null if none. */
export function collectionFile(dir: string, name: string): string | null {
  const file = path.join(dir, `${name}.db`);
  if (fs.existsSync(file)) return file;
  if (fs.existsSync(`${file}~`)) return `${file}~`;
  return null;
}

/** Whether a file starts like one of SQLite's (which may share the extension): not NeDB's. */
export function isSqliteFile(file: string): boolean {
  const head = Buffer.alloc(16);
  const fd = fs.openSync(file, "r");
  try {
    const n = fs.readSync(fd, head, 0, 16, 0);
    return head.subarray(0, n).toString("latin1") === "SQLite format 3\0";
  } finally {
    fs.closeSync(fd);
  }
}

/** Parses the text of a collection file (see the module comment); `file` names it in errors. */
export function parseNedbText(text: string, file = "<text>"): Omit<NedbCollectionFile, "file"> {
  const docs = new Map<string, Doc>();
  const end = text.lastIndexOf("\n") + 1;
  const tornBytes = Buffer.byteLength(text.slice(end));
  const lines = text.slice(0, end).split("\n");
  lines.pop(); // after the last "\n"
  let count = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === "") continue;
    count++;
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(line, revive) as Record<string, unknown>;
    } catch {
      throw new CorruptNedbFileError(file, i + 1);
    }
    if (doc === null || typeof doc !== "object" || Array.isArray(doc))
      throw new CorruptNedbFileError(file, i + 1);
    const id = doc._id;
    // NeDB keeps a line by its _id when it has one, and skips index lines (and others).
    if (!id) continue;
    const key = String(id);
    // Map order is insertion order: a rewrite moves a document to its last write.
    docs.delete(key);
    if (doc.$$deleted !== true) docs.set(key, doc as Doc);
  }
  return { docs, tornBytes, lines: count };
}

/** Reads one collection of a service's NeDB folder; null when it has no file. */
export function readNedbCollection(dir: string, name: string): NedbCollectionFile | null {
  const file = collectionFile(dir, name);
  if (!file) return null;
  return { file, ...parseNedbText(fs.readFileSync(file, "utf8"), file) };
}

/**
 * The collections a folder holds NeDB files for (`<name>.db` or `<name>.db~`), by name,
 * leaving out files that are SQLite's.
 */
export function nedbCollectionsIn(dir: string): string[] {
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const names = new Set<string>();
  for (const entry of entries) {
    const m = /^(.+)\.db~?$/.exec(entry);
    if (!m) continue;
    const full = path.join(dir, entry);
    if (!fs.statSync(full).isFile() || isSqliteFile(full)) continue;
    names.add(m[1]);
  }
  return [...names].sort();
}

/** The NeDB files of one collection in a folder (the file, its rewrite, a probe), for moving them aside. */
export function nedbFilesOf(dir: string, name: string): string[] {
  const base = path.join(dir, `${name}.db`);
  return [base, `${base}~`, `${base}.probe`].filter(f => fs.existsSync(f) && !isSqliteFile(f));
}
