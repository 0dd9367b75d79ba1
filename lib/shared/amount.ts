/**
 * Amounts (docs/architecture.md rule 1): unsigned integers of base units, 0 … 2^256−1, carried as
 * decimal strings and computed with BigInt. Never a float, never a sign or a point.
 */

export const MAX_UINT256 = (1n << 256n) - 1n;
/** 2^256−1 has 78 decimal digits. */
export const MAX_AMOUNT_DIGITS = 78;
export const AMOUNT_PATTERN = /^(0|[1-9][0-9]*)$/;

/** Thrown when an amount is malformed or a result leaves the uint256 range. */
export class AmountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AmountError";
  }
}

/** Why `text` is not an amount, or null when it is one. */
export function amountProblem(text: unknown): string | null {
  if (typeof text !== "string") return "must be a string of decimal digits";
  if (!AMOUNT_PATTERN.test(text))
    return "must be a string of decimal digits without sign, point or leading zeros";
  if (text.length > MAX_AMOUNT_DIGITS || BigInt(text) > MAX_UINT256)
    return "must be at most 2^256-1";
  return null;
}

export function isAmount(text: unknown): text is string {
  return amountProblem(text) === null;
}

export function parseAmount(text: string): bigint {
  const problem = amountProblem(text);
  if (problem) throw new AmountError(`Amount ${problem}`);
  return BigInt(text);
}

export function formatAmount(value: bigint): string {
  if (value < 0n || value > MAX_UINT256) throw new AmountError("Amount out of the uint256 range");
  return value.toString(10);
}

/** a + b, or an AmountError when the sum passes 2^256−1. */
export function checkedAdd(a: bigint, b: bigint): bigint {
  const sum = a + b;
  if (a < 0n || b < 0n || sum > MAX_UINT256) throw new AmountError("Amount overflow");
  return sum;
}

/** a − b, or null when b > a (the caller decides which business error that is). */
export function checkedSub(a: bigint, b: bigint): bigint | null {
  if (a < 0n || b < 0n) throw new AmountError("Negative amount");
  return b > a ? null : a - b;
}

/**
 * A key that sorts like the amount: zero-padded to 78 digits, so a string index
 * (NeDB or MongoDB) can list holders largest first.
 */
export function amountSortKey(text: string): string {
  return text.padStart(MAX_AMOUNT_DIGITS, "0");
}

type CustomErrors = Array<{ type: string; actual: unknown; message: string }>;

/**
 * fastest-validator rule for an amount param; every action taking an amount uses it,
 * so a bad amount is a 400 VALIDATION_ERROR naming the field.
 */
export function amountRule(opts: { optional?: boolean } = {}) {
  return {
    type: "string" as const,
    optional: opts.optional ?? false,
    empty: false,
    messages: {
      string: "The '{field}' field must be a string of decimal digits (base units).",
      stringEmpty: "The '{field}' field must not be empty.",
    },
    custom(
      value: unknown,
      errors: CustomErrors,
      schema: { optional?: boolean },
      field: string,
    ): unknown {
      // fastest-validator runs custom checks on missing optional values too.
      if (value === undefined && schema.optional) return value;
      const problem = amountProblem(value);
      if (problem) {
        errors.push({ type: "amount", actual: value, message: `The '${field}' field ${problem}.` });
      }
      return value;
    },
  };
}
