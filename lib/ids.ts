import { randomBytes } from "node:crypto";

/**
 * Opaque ids with a type prefix (usr_…, tok_…): we set `_id` ourselves so NeDB and
 * MongoDB store the same kind of id, and a reader can tell what an id names.
 */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString("hex")}`;
}
