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

/** Folds a file's whole lines into the live documents (see the module comment). */
class Collector {
  readonly docs = new Map<string, Doc>();
  lines = 0;
  private lineNo = 0;

  constructor(private readonly file: string) {}

  line(line: string): void {
    this.lineNo++;
    if (line === "") return;
    this.lines++;
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(line, revive) as Record<string, unknown>;
    } catch {
      throw new CorruptNedbFileError(this.file, this.lineNo);
    }
    if (doc === null || typeof doc !== "object" || Array.isArray(doc))
      throw new CorruptNedbFileError(this.file, this.lineNo);
    const id = doc._id;
    // NeDB keeps a line by its _id when it has one, and skips index lines (and others).
    if (!id) return;
    const key = String(id);
    // Map order is insertion order: a document moves to its last write.
    this.docs.delete(key);
    if (doc.$$deleted !== true) this.docs.set(key, doc as Doc);
  }
}

/** Parses the text of a collection file (see the module comment); `file` names it in errors. */
export function parseNedbText(text: string, file = "<text>"): Omit<NedbCollectionFile, "file"> {
  const c = new Collector(file);
  const end = text.lastIndexOf("\n") + 1;
  const lines = text.slice(0, end).split("\n");
  lines.pop(); // after the last "\n"
  for (const line of lines) c.line(line);
  return { docs: c.docs, tornBytes: Buffer.byteLength(text.slice(end)), lines: c.lines };
}

/** Bytes read at a time: a collection file never has to fit in one string. */
const CHUNK = 1 << 20;

/** Reads one collection of a service's NeDB folder, a line at a time; null when it has no file. */
export function readNedbCollection(dir: string, name: string): NedbCollectionFile | null {
  const file = collectionFile(dir, name);
  if (!file) return null;
  const c = new Collector(file);
  const fd = fs.openSync(file, "r");
  const buf = Buffer.alloc(CHUNK);
  // Bytes after the last "\n" seen so far (a line split across chunks, or the torn tail).
  let rest: Buffer = Buffer.alloc(0);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, CHUNK, null);
      if (n === 0) break;
      let chunk = Buffer.concat([rest, buf.subarray(0, n)]);
      let nl: number;
      while ((nl = chunk.indexOf(0x0a)) >= 0) {
        c.line(chunk.toString("utf8", 0, nl));
        chunk = chunk.subarray(nl + 1);
      }
      rest = Buffer.from(chunk);
    }
  } finally {
    fs.closeSync(fd);
  }
  return { file, docs: c.docs, tornBytes: rest.length, lines: c.lines };
}

/**
 * The collections a folder holds NeDB files for (`<name>.db` or `<name>.db~`), by name,
 * leaving out files that are SQLite's, and empty ones (no documents to migrate; a new
 * store may have just created its file).
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
    const stat = fs.statSync(full);
    if (!stat.isFile() || stat.size === 0 || isSqliteFile(full)) continue;
    names.add(m[1]);
  }
  return [...names].sort();
}

/** The NeDB files of one collection in a folder (the file, its rewrite, a probe), for moving them aside. */
export function nedbFilesOf(dir: string, name: string): string[] {
  const base = path.join(dir, `${name}.db`);
  return [base, `${base}~`, `${base}.probe`].filter(f => fs.existsSync(f) && !isSqliteFile(f));
}
