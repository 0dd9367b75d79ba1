import { randomUUID } from "node:crypto";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { DuplicateKeyError } from "../store";
import type { CollectionSpec, Doc, FindOptions, Query, Update } from "../store";
import { fieldExpr, translateOptions, translateQuery, type SqlValue } from "./sql-query";
import { applyUpdate } from "./update-ops";

/**
 * One collection as one table, `_id TEXT PRIMARY KEY, doc TEXT` (the document as JSON),
 * its indexes on json_extract expressions. The operations are synchronous on the
 * connection they are given (node:sqlite is): the database decides which one, and
 * wraps the writes in its transactions.
 */

/** Dates as NeDB writes them, `{"$$date": ms}`, so they read back as Dates. */
export function encodeDoc(doc: Doc): string {
  return JSON.stringify(doc, function (this: Record<string, unknown>, key, value: unknown) {
    const raw = this[key];
    return raw instanceof Date ? { $$date: raw.getTime() } : value;
  });
}

const reviveDate = (_key: string, v: unknown): unknown =>
  v !== null && typeof v === "object" && "$$date" in v && Object.keys(v).length === 1
    ? new Date((v as { $$date: number }).$$date)
    : v;

export function decodeDoc<T extends Doc>(text: string): T {
  // The reviver costs a call per value: only for the documents that hold a Date.
  return (text.includes('"$$date"') ? JSON.parse(text, reviveDate) : JSON.parse(text)) as T;
}

const SQLITE_CONSTRAINT_UNIQUE = 2067;
const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;

export const errcodeOf = (err: unknown): number | undefined =>
  (err as { errcode?: number } | null)?.errcode;

/** Prepared statements per connection: the same shapes of query come again and again. */
const statements = new WeakMap<DatabaseSync, Map<string, StatementSync>>();

export function prepare(conn: DatabaseSync, sql: string): StatementSync {
  let cache = statements.get(conn);
  if (!cache) statements.set(conn, (cache = new Map()));
  let stmt = cache.get(sql);
  if (!stmt) {
    // $in lists of every length make new shapes: keep the cache bounded.
    if (cache.size > 500) cache.clear();
    stmt = conn.prepare(sql);
    cache.set(sql, stmt);
  }
  return stmt;
}

export const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;

type Row = { _id: string; doc: string };

export class SqliteCollection<T extends Doc = Doc> {
  private readonly table: string;

  constructor(readonly name: string) {
    this.table = quoteIdent(name);
  }

  /** Creates the table and makes its indexes what `spec` says (an index it no longer names goes). */
  ensureSchema(conn: DatabaseSync, spec: CollectionSpec): void {
    conn.exec(`CREATE TABLE IF NOT EXISTS ${this.table} (_id TEXT PRIMARY KEY, doc TEXT NOT NULL)`);
    const wanted = new Map<string, string>();
    const add = (kind: string, field: string, unique: boolean, sparse: boolean) => {
      const index = `${this.name}:${kind}:${field}`;
      const expr = fieldExpr(field);
      wanted.set(
        index,
        `CREATE ${unique ? "UNIQUE " : ""}INDEX IF NOT EXISTS ${quoteIdent(index)} ON ` +
          `${this.table} (${expr})${sparse ? ` WHERE ${expr} IS NOT NULL` : ""}`,
      );
    };
    for (const f of spec.unique ?? []) add("unique", f, true, false);
    for (const f of spec.indexes ?? []) add("index", f, false, false);
    for (const f of spec.sparse ?? []) add("sparse", f, false, true);
    for (const f of spec.uniqueSparse ?? []) add("uniqueSparse", f, true, true);
    for (const fields of spec.compound ?? []) {
      // Partial: a row without one of the equality fields costs no write in an index no
      // query of it can use (half of an activity row's index writes); the sort field, which
      // a query orders by without a condition, is not one of them. The name says so, so an
      // index made before it was partial is dropped and made again.
      const index = `${this.name}:compound:${fields.join("+")}:partial`;
      const exprs = fields.map(f => fieldExpr(f));
      const present = exprs
        .slice(0, -1)
        .map(e => `${e} IS NOT NULL`)
        .join(" AND ");
      wanted.set(
        index,
        `CREATE INDEX IF NOT EXISTS ${quoteIdent(index)} ON ${this.table} (${exprs.join(", ")})` +
          (present ? ` WHERE ${present}` : ""),
      );
    }
    const existing = conn
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
      )
      .all(this.name) as Array<{ name: string }>;
    for (const { name } of existing)
      if (!wanted.has(name)) conn.exec(`DROP INDEX ${quoteIdent(name)}`);
    for (const sql of wanted.values()) conn.exec(sql);
  }

  private select(conn: DatabaseSync, query: Query, opts: FindOptions = {}): Row[] {
    const where = translateQuery(query);
    const tail = translateOptions(opts);
    const sql = `SELECT _id, doc FROM ${this.table} WHERE ${where.sql}${tail.sql}`;
    return prepare(conn, sql).all(...where.params, ...tail.params) as Row[];
  }

  findOne(conn: DatabaseSync, query: Query): T | null {
    const [row] = this.select(conn, query, { limit: 1 });
    return row ? decodeDoc<T>(row.doc) : null;
  }

  find(conn: DatabaseSync, query: Query, opts?: FindOptions): T[] {
    return this.select(conn, query, opts).map(r => decodeDoc<T>(r.doc));
  }

  count(conn: DatabaseSync, query: Query): number {
    const where = translateQuery(query);
    const sql = `SELECT count(*) AS n FROM ${this.table} WHERE ${where.sql}`;
    return Number((prepare(conn, sql).get(...where.params) as { n: number }).n);
  }

  /** Runs a write, a unique violation as DuplicateKeyError. */
  private guarded<R>(fn: () => R): R {
    try {
      return fn();
    } catch (err) {
      const code = errcodeOf(err);
      if (code === SQLITE_CONSTRAINT_UNIQUE || code === SQLITE_CONSTRAINT_PRIMARYKEY)
        throw new DuplicateKeyError(this.name);
      throw err;
    }
  }

  insert(conn: DatabaseSync, doc: T): T {
    // NeDB and MongoDB give a document without an _id one.
    const d = (doc._id === undefined ? { ...doc, _id: randomUUID() } : doc) as T;
    const sql = `INSERT INTO ${this.table} (_id, doc) VALUES (?, ?)`;
    this.guarded(() => prepare(conn, sql).run(String(d._id), encodeDoc(d)));
    return d;
  }

  /** Writes every document; the caller's savepoint makes it all or none. */
  insertMany(conn: DatabaseSync, docs: T[]): T[] {
    return docs.map(d => this.insert(conn, d));
  }

  private write(conn: DatabaseSync, doc: T): void {
    const sql = `UPDATE ${this.table} SET doc = ? WHERE _id = ?`;
    this.guarded(() => prepare(conn, sql).run(encodeDoc(doc), doc._id));
  }

  update(conn: DatabaseSync, query: Query, update: Update): number {
    const rows = this.select(conn, query);
    for (const r of rows) this.write(conn, applyUpdate(decodeDoc<T>(r.doc), update));
    return rows.length;
  }

  updateOne(conn: DatabaseSync, query: Query, update: Update): T | null {
    const [row] = this.select(conn, query, { limit: 1 });
    if (!row) return null;
    const next = applyUpdate(decodeDoc<T>(row.doc), update);
    this.write(conn, next);
    return next;
  }

  remove(conn: DatabaseSync, query: Query): number {
    const where = translateQuery(query);
    const sql = `DELETE FROM ${this.table} WHERE ${where.sql}`;
    return Number(prepare(conn, sql).run(...(where.params as SqlValue[])).changes);
  }
}
