import type { FindOptions, Query } from "../store";

/**
 * A Query (the MongoDB/NeDB dialect the engines write) as an SQL condition over a table of
 * `_id TEXT PRIMARY KEY, doc TEXT` (the document as JSON). Fields are read with
 * json_extract under the very expression the indexes are built on (fieldExpr), so SQLite
 * uses them; values are bound parameters, never spliced in. What the engines use: equality,
 * $in, $ne, $lt/$lte/$gt/$gte, $exists, $regex, $or/$and, dotted paths (`pending.0`,
 * `wallets.address` through an array of objects).
 *
 * A field set to null counts as absent, as in SQL ($exists: false matches it): the
 * documents never store null where they test for presence, and it lets a sparse index
 * (WHERE … IS NOT NULL) serve $exists: true.
 */

/** What node:sqlite binds: booleans are not among them (compared through json_type). */
export type SqlValue = string | number | null;

export interface SqlCondition {
  sql: string;
  params: SqlValue[];
}

/** A field path as a JSON path: `a.b.0` → `$."a"."b"[0]`, each key quoted. */
export function jsonPath(field: string): string {
  return (
    "$" +
    field
      .split(".")
      .map(seg => (/^\d+$/.test(seg) ? `[${seg}]` : `."${seg.replace(/"/g, '""')}"`))
      .join("")
  );
}

/** An SQL string literal: paths go in literally so they match the index expressions. */
const literal = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** The expression of a field: the `_id` column, or json_extract of the document. */
export function fieldExpr(field: string, doc = "doc"): string {
  if (field === "_id" && doc === "doc") return "_id";
  return `json_extract(${doc}, ${literal(jsonPath(field))})`;
}

const typeExpr = (field: string, doc: string): string =>
  `json_type(${doc}, ${literal(jsonPath(field))})`;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null &&
  typeof v === "object" &&
  !Array.isArray(v) &&
  !(v instanceof Date) &&
  !(v instanceof RegExp);

/** A value as SQLite sees it from json_extract: Dates are stored as NeDB's `{"$$date": ms}`. */
function bindable(v: unknown): SqlValue {
  if (v === null || v === undefined) return null;
  if (typeof v === "string" || typeof v === "number") return v;
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Date) return JSON.stringify({ $$date: v.getTime() });
  return JSON.stringify(v);
}

/**
 * The type guard of a comparison: MongoDB and NeDB compare only values of one type (a
 * number is never "less than" a string), while SQLite orders every number before every
 * text. So `amount: { $lt: "5" }` only looks at strings, the way the code compares its
 * decimal strings today.
 */
function sameType(expr: string, v: unknown): string {
  return typeof v === "number"
    ? `typeof(${expr}) IN ('integer', 'real')`
    : `typeof(${expr}) = 'text'`;
}

class Translator {
  readonly params: SqlValue[] = [];

  constructor(private readonly doc: string) {}

  query(q: Query): string {
    const terms: string[] = [];
    for (const [key, cond] of Object.entries(q)) {
      if (key === "$or" || key === "$and") {
        const parts = (cond as Query[]).map(sub => this.query(sub));
        if (parts.length === 0) terms.push(key === "$or" ? "0" : "1");
        else terms.push(`(${parts.join(key === "$or" ? " OR " : " AND ")})`);
      } else if (key.startsWith("$")) {
        throw new Error(`Query operator ${key} is not supported by the SQLite store`);
      } else {
        terms.push(this.field(key, cond));
      }
    }
    return terms.length === 0 ? "1" : terms.join(" AND ");
  }

  /**
   * One field's condition. A dotted path whose head is an array of objects also matches
   * through its elements (`wallets.address`), as in MongoDB and NeDB.
   */
  private field(field: string, cond: unknown): string {
    const direct = this.conditions(field, cond, this.doc);
    const dot = field.indexOf(".");
    if (dot < 0 || this.doc !== "doc" || /^\d+$/.test(field.slice(dot + 1).split(".")[0]!))
      return direct;
    const head = field.slice(0, dot);
    const rest = field.slice(dot + 1);
    const viaElement = this.conditions(rest, cond, "value");
    if (isPlainObject(cond) && "$exists" in cond && cond.$exists === false) return direct;
    if (isPlainObject(cond) && "$ne" in cond) return direct;
    return (
      // json_each's own `type`, and CASE rather than AND (SQLite may evaluate either side
      // of an AND first): json_type or json_extract of an element that is a plain string
      // ("Blue" in { traits: { a: "Blue" } }) is an error, not a mismatch.
      `(${direct} OR EXISTS (SELECT 1 FROM json_each(doc, ${literal(jsonPath(head))}) ` +
      `WHERE CASE WHEN type = 'object' THEN ${viaElement} ELSE 0 END))`
    );
  }

  private conditions(field: string, cond: unknown, doc: string): string {
    if (!isPlainObject(cond) || !Object.keys(cond).some(k => k.startsWith("$")))
      return this.equals(field, cond, doc);
    const terms = Object.entries(cond).map(([op, v]) => this.operator(field, op, v, doc, cond));
    return terms.length === 1 ? terms[0]! : `(${terms.join(" AND ")})`;
  }

  private bind(v: unknown): string {
    this.params.push(bindable(v));
    return "?";
  }

  private equals(field: string, v: unknown, doc: string): string {
    const x = fieldExpr(field, doc);
    if (v === null || v === undefined) return `${x} IS NULL`;
    if (typeof v === "boolean") return `${typeExpr(field, doc)} = '${v}'`;
    if (typeof v === "object" && !(v instanceof Date)) return `${x} = json(${this.bind(v)})`; // a whole object or array, as JSON
    return `${x} = ${this.bind(v)}`;
  }

  private operator(
    field: string,
    op: string,
    v: unknown,
    doc: string,
    all: Record<string, unknown>,
  ): string {
    const x = fieldExpr(field, doc);
    switch (op) {
      case "$in": {
        const list = v as unknown[];
        if (list.length === 0) return "0";
        const scalars = list.filter(e => typeof e !== "boolean" && e !== null);
        const terms: string[] = [];
        if (scalars.length > 0)
          terms.push(`${x} IN (${scalars.map(e => this.bind(e)).join(", ")})`);
        for (const e of list)
          if (typeof e === "boolean" || e === null) terms.push(this.equals(field, e, doc));
        return terms.length === 1 ? terms[0]! : `(${terms.join(" OR ")})`;
      }
      case "$nin":
        return `NOT ${this.operator(field, "$in", v, doc, all)}`;
      case "$ne":
        if (typeof v === "boolean") return `${typeExpr(field, doc)} IS NOT '${v}'`;
        if (v === null) return `${x} IS NOT NULL`;
        return `${x} IS NOT ${this.bind(v)}`;
      case "$lt":
      case "$lte":
      case "$gt":
      case "$gte": {
        const sql = { $lt: "<", $lte: "<=", $gt: ">", $gte: ">=" }[op];
        return `(${sameType(x, v)} AND ${x} ${sql} ${this.bind(v)})`;
      }
      case "$exists":
        return v ? `${x} IS NOT NULL` : `${x} IS NULL`;
      case "$regex": {
        const re = v instanceof RegExp ? v : new RegExp(String(v), String(all.$options ?? ""));
        return `mm_regexp(${x}, ${this.bind(re.source)}, ${this.bind(re.flags)})`;
      }
      case "$options":
        return "1"; // read with $regex
      default:
        throw new Error(`Query operator ${op} is not supported by the SQLite store`);
    }
  }
}

/** The WHERE condition of `q` over the table's `doc` column. */
export function translateQuery(q: Query): SqlCondition {
  const t = new Translator("doc");
  const sql = t.query(q);
  return { sql, params: t.params };
}

/** ORDER BY / LIMIT / OFFSET of FindOptions (empty when none). */
export function translateOptions(opts: FindOptions = {}): SqlCondition {
  const params: SqlValue[] = [];
  let sql = "";
  const sort = Object.entries(opts.sort ?? {});
  if (sort.length > 0)
    sql += ` ORDER BY ${sort.map(([f, dir]) => `${fieldExpr(f)} ${dir < 0 ? "DESC" : "ASC"}`).join(", ")}`;
  if (opts.limit || opts.offset) {
    sql += " LIMIT ?";
    params.push(opts.limit || -1);
  }
  if (opts.offset) {
    sql += " OFFSET ?";
    params.push(opts.offset);
  }
  return { sql, params };
}

const compiled = new Map<string, RegExp>();

/** The regexp function the translation calls ($regex); a search compiles its pattern once. */
export function regexpFunction(value: unknown, source: unknown, flags: unknown): number {
  if (typeof value !== "string") return 0;
  const key = `${String(flags)}/${String(source)}`;
  let re = compiled.get(key);
  if (!re) {
    if (compiled.size > 1000) compiled.clear();
    re = new RegExp(String(source), String(flags).replace("g", ""));
    compiled.set(key, re);
  }
  return re.test(value) ? 1 : 0;
}
