import { describe, expect, it } from "vitest";
import Validator from "fastest-validator";
import {
  AmountError,
  MAX_UINT256,
  amountProblem,
  amountRule,
  amountSortKey,
  checkedAdd,
  checkedSub,
  formatAmount,
  isAmount,
  parseAmount,
} from "../../../lib/shared/amount";

const MAX = MAX_UINT256.toString();
const OVER = (MAX_UINT256 + 1n).toString();

describe("amounts (uint256 decimal strings)", () => {
  it("has 2^256-1 as the largest amount", () => {
    expect(MAX).toBe(
      "115792089237316195423570985008687907853269984665640564039457584007913129639935",
    );
    expect(MAX).toHaveLength(78);
  });

  it.each(["0", "1", "10", "999", MAX])("parses %s", text => {
    expect(isAmount(text)).toBe(true);
    expect(formatAmount(parseAmount(text))).toBe(text);
  });

  it.each([
    ["", "digits"],
    ["-1", "digits"],
    ["+1", "digits"],
    ["1.0", "digits"],
    ["1e3", "digits"],
    ["01", "leading zeros"],
    ["00", "leading zeros"],
    [" 1", "digits"],
    ["0x10", "digits"],
    ["١", "digits"],
    [OVER, "2^256-1"],
    ["9".repeat(78), "2^256-1"],
    ["1" + "0".repeat(78), "2^256-1"],
  ])("refuses %j", (text, why) => {
    expect(isAmount(text)).toBe(false);
    expect(amountProblem(text)).toContain(why);
    expect(() => parseAmount(text)).toThrow(AmountError);
  });

  it("refuses what is not a string", () => {
    for (const v of [1, 1n, null, undefined, {}, ["1"]]) expect(isAmount(v)).toBe(false);
  });

  it("adds up to 2^256-1 and no further", () => {
    expect(checkedAdd(MAX_UINT256 - 1n, 1n)).toBe(MAX_UINT256);
    expect(checkedAdd(0n, MAX_UINT256)).toBe(MAX_UINT256);
    expect(() => checkedAdd(MAX_UINT256, 1n)).toThrow(AmountError);
  });

  it("subtracts down to 0 and answers null below", () => {
    expect(checkedSub(MAX_UINT256, MAX_UINT256)).toBe(0n);
    expect(checkedSub(5n, 0n)).toBe(5n);
    expect(checkedSub(0n, 1n)).toBeNull();
    expect(checkedSub(MAX_UINT256 - 1n, MAX_UINT256)).toBeNull();
    expect(() => checkedSub(-1n, 0n)).toThrow(AmountError);
  });

  it("formats only values in range", () => {
    expect(formatAmount(0n)).toBe("0");
    expect(() => formatAmount(-1n)).toThrow(AmountError);
    expect(() => formatAmount(MAX_UINT256 + 1n)).toThrow(AmountError);
  });

  it("gives sort keys that order like the amounts", () => {
    const values = ["0", "9", "10", "100", "99", MAX, "12345678901234567890"];
    const byKey = [...values].sort((a, b) => (amountSortKey(a) < amountSortKey(b) ? -1 : 1));
    const byValue = [...values].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
    expect(byKey).toEqual(byValue);
  });
});

describe("amountRule (fastest-validator)", () => {
  // As moleculer's validator configures it.
  const validator = () => new Validator({ useNewCustomCheckerFunction: true });
  const check = validator().compile({ $$strict: "remove", amount: amountRule() });

  it("passes good amounts", () => {
    expect(check({ amount: "0" })).toBe(true);
    expect(check({ amount: MAX })).toBe(true);
  });

  it.each([[1], [-1], ["-1"], ["1.5"], ["01"], [OVER], [""], [null], [undefined]])(
    "names the field for %j",
    amount => {
      const res = check({ amount });
      expect(res).not.toBe(true);
      const errors = res as Array<{ field: string; message: string }>;
      expect(errors[0].field).toBe("amount");
      expect(errors[0].message).toMatch(/amount/);
    },
  );

  it("can be optional", () => {
    const optional = validator().compile({ fee: amountRule({ optional: true }) });
    expect(optional({})).toBe(true);
    expect(optional({ fee: "x" })).not.toBe(true);
  });
});
