import { randomFillSync } from "node:crypto";

/**
 * Opaque ids with a type prefix (usr_…, tok_…): we set `_id` ourselves so NeDB and
 * MongoDB store the same kind of id, and a reader can tell what an id names.
 * 96 random bits each, taken from a pool refilled 4 KiB at a time: one call into the
 * CSPRNG per id was a noticeable share of a transfer's cost.
 */
const pool = Buffer.alloc(4096);
let used = pool.length;

export function newId(prefix: string): string {
  if (used + 12 > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  used += 12;
  return `${prefix}_${pool.toString("hex", used - 12, used)}`;
}
