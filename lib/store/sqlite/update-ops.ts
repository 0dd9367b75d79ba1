import type { Doc, Update } from "../store";

/**
 * Update operators applied in JS to a decoded document, which the store then writes back
 * in the same transaction: SQLite's JSON functions could do $set, but not $pull of the
 * elements matching a condition or $addToSet's deep comparison, and one code path for all
 * keeps them consistent. What the engines use: $set, $unset, $inc, $push (with $each),
 * $pull (a value, a condition on the elements' fields, or $in), $addToSet, $min, $max.
 */

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj =>
  v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Date || b instanceof Date)
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => deepEqual(x, b[i]));
  }
  if (!isObj(a) || !isObj(b)) return false;
  const ka = Object.keys(a).filter(k => a[k] !== undefined);
  const kb = Object.keys(b).filter(k => b[k] !== undefined);
  return ka.length === kb.length && ka.every(k => deepEqual(a[k], b[k]));
}

/** The parent object of a dotted path and the last key; creates the objects on the way when asked. */
function locate(
  doc: Obj,
  field: string,
  create: boolean,
): { parent: Obj | unknown[]; key: string } | null {
  const segs = field.split(".");
  let at: unknown = doc;
  for (const seg of segs.slice(0, -1)) {
    const holder = at as Obj;
    let next = Array.isArray(at) ? (at as unknown[])[Number(seg)] : holder[seg];
    if (next === undefined || next === null) {
      if (!create) return null;
      next = {};
      if (Array.isArray(at)) (at as unknown[])[Number(seg)] = next;
      else holder[seg] = next;
    }
    if (typeof next !== "object")
      throw new Error(`Cannot update ${field}: ${seg} is not an object`);
    at = next;
  }
  return { parent: at as Obj | unknown[], key: segs[segs.length - 1]! };
}

function get(doc: Obj, field: string): unknown {
  const loc = locate(doc, field, false);
  if (!loc) return undefined;
  return Array.isArray(loc.parent) ? loc.parent[Number(loc.key)] : loc.parent[loc.key];
}

function set(doc: Obj, field: string, value: unknown): void {
  const loc = locate(doc, field, true)!;
  if (Array.isArray(loc.parent)) loc.parent[Number(loc.key)] = value;
  else loc.parent[loc.key] = value;
}

function unset(doc: Obj, field: string): void {
  const loc = locate(doc, field, false);
  if (!loc) return;
  if (Array.isArray(loc.parent)) loc.parent[Number(loc.key)] = null;
  else delete loc.parent[loc.key];
}

/** Whether one array element matches a $pull condition. */
export function matchesElement(el: unknown, cond: unknown): boolean {
  if (!isObj(cond)) return deepEqual(el, cond);
  const ops = Object.keys(cond);
  if (ops.length > 0 && ops.every(k => k.startsWith("$")))
    return ops.every(op => matchesOperator(el, op, cond[op]));
  // A condition on the fields of object elements.
  if (!isObj(el)) return false;
  return ops.every(k => matchesElement(get(el, k), cond[k]));
}

function matchesOperator(v: unknown, op: string, arg: unknown): boolean {
  switch (op) {
    case "$in":
      return (arg as unknown[]).some(a => deepEqual(v, a));
    case "$nin":
      return !(arg as unknown[]).some(a => deepEqual(v, a));
    case "$ne":
      return !deepEqual(v, arg);
    case "$exists":
      return (v !== undefined && v !== null) === Boolean(arg);
    case "$lt":
    case "$lte":
    case "$gt":
    case "$gte": {
      if (typeof v !== typeof arg || (typeof v !== "number" && typeof v !== "string")) return false;
      const a = arg as number | string;
      return op === "$lt" ? v < a : op === "$lte" ? v <= a : op === "$gt" ? v > a : v >= a;
    }
    default:
      throw new Error(`$pull condition ${op} is not supported by the SQLite store`);
  }
}

const eachOf = (v: unknown): unknown[] => (isObj(v) && Array.isArray(v.$each) ? v.$each : [v]);

function arrayAt(doc: Obj, field: string, op: string): unknown[] {
  const cur = get(doc, field);
  if (cur === undefined || cur === null) {
    const fresh: unknown[] = [];
    set(doc, field, fresh);
    return fresh;
  }
  if (!Array.isArray(cur)) throw new Error(`${op} on ${field}, which is not an array`);
  return cur;
}

/** `update` applied to a copy of `doc`; the caller writes the result back. */
export function applyUpdate<T extends Doc>(doc: T, update: Update): T {
  const out = structuredClone(doc) as Obj;
  const ops = Object.keys(update);
  if (ops.length > 0 && !ops.some(k => k.startsWith("$")))
    // A whole replacement document, as NeDB and MongoDB take it; the _id stays.
    return { ...(structuredClone(update) as Obj), _id: doc._id } as T;
  for (const [op, fields] of Object.entries(update)) {
    for (const [field, v] of Object.entries(fields as Obj)) {
      if (field === "_id") throw new Error("The _id of a document cannot change");
      switch (op) {
        case "$set":
          set(out, field, structuredClone(v));
          break;
        case "$unset":
          unset(out, field);
          break;
        case "$inc": {
          const cur = get(out, field) ?? 0;
          if (typeof cur !== "number" || typeof v !== "number")
            throw new Error(`$inc on ${field}, which is not a number`);
          set(out, field, cur + v);
          break;
        }
        case "$min":
        case "$max": {
          const cur = get(out, field) as number | string | undefined;
          const w = v as number | string;
          if (cur === undefined || (op === "$min" ? w < cur : w > cur)) set(out, field, w);
          break;
        }
        case "$push":
          arrayAt(out, field, op).push(...structuredClone(eachOf(v)));
          break;
        case "$addToSet": {
          const arr = arrayAt(out, field, op);
          for (const e of eachOf(v))
            if (!arr.some(x => deepEqual(x, e))) arr.push(structuredClone(e));
          break;
        }
        case "$pull": {
          const cur = get(out, field);
          if (Array.isArray(cur))
            set(
              out,
              field,
              cur.filter(e => !matchesElement(e, v)),
            );
          break;
        }
        default:
          throw new Error(`Update operator ${op} is not supported by the SQLite store`);
      }
    }
  }
  return out as T;
}
