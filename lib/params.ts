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

type CustomErrors = Array<{ type: string; actual: unknown; message: string }>;

/**
 * A `custom` check for an object or array rule: the value as JSON is at most `maxBytes`
 * bytes of UTF-8, whatever its parts' own limits add up to (what one write may carry).
 */
export function maxJsonBytes(maxBytes: number) {
  return (value: unknown, errors: CustomErrors, _schema: unknown, field: string): unknown => {
    if (value === undefined || value === null) return value;
    const bytes = Buffer.byteLength(JSON.stringify(value));
    if (bytes > maxBytes) {
      errors.push({
        type: "jsonMax",
        actual: bytes,
        message: `The '${field}' field must be at most ${maxBytes} bytes as JSON (it is ${bytes}).`,
      });
    }
    return value;
  };
}
