/** Params rules more than one service takes (fastest-validator schemas). */

/** An id in a path: opaque, bounded. */
export const idParam = { type: "string" as const, min: 1, max: 64 };

/** An account: a user id or a linked wallet's 0x address. */
export const accountParam = { type: "string" as const, trim: true, min: 1, max: 128 };

/** `?limit=` (1–100, default 20) and `?offset=` of a list (docs/api.md "Lists"). */
export const pageParams = {
  limit: {
    type: "number" as const,
    integer: true,
    convert: true,
    min: 1,
    max: 100,
    optional: true,
    default: 20,
  },
  offset: {
    type: "number" as const,
    integer: true,
    convert: true,
    min: 0,
    optional: true,
    default: 0,
  },
};
