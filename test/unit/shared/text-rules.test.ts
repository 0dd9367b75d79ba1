import Validator from "fastest-validator";
import { describe, expect, it } from "vitest";
import { textProblem, textRule, urlProblem, urlRule } from "../../../lib/shared/text-rules";

const validator = () => new Validator({ useNewCustomCheckerFunction: true });

describe("lib/text-rules", () => {
  it("refuses control characters and bidi overrides, and nothing else", () => {
    for (const bad of [
      "a\u0000",
      "tab\there",
      "new\nline",
      "del\u007f",
      "c1\u0085",
      "\u202Eevil",
      "\u2066iso\u2069",
    ]) {
      expect(textProblem(bad), JSON.stringify(bad)).not.toBeNull();
    }
    for (const good of ["Ann", "Zoë & co — 100%", "日本語", "emoji 🚀", "עברית", ""]) {
      expect(textProblem(good), good).toBeNull();
    }
  });

  it("takes http(s) URLs without quotes, angle brackets or spaces", () => {
    for (const good of ["https://example.com/a.png?x=1#y", "http://localhost:3000/p"]) {
      expect(urlProblem(good), good).toBeNull();
    }
    for (const bad of [
      "javascript:alert(1)",
      "ftp://example.com/",
      'https://example.com/"x',
      "https://example.com/'x",
      "https://example.com/<x>",
      "https://example.com/`x`",
      "https://example.com/a b",
      "https://example.com/\\x",
      "//example.com",
      "example.com",
    ]) {
      expect(urlProblem(bad), bad).not.toBeNull();
    }
  });

  it("gives fastest-validator rules that name the field, and let optional and null be", () => {
    const check = validator().compile({
      name: textRule({ trim: true, min: 1, max: 8 }),
      bio: textRule({ max: 20, optional: true }),
      avatarUrl: urlRule({ optional: true, nullable: true }),
    });
    expect(check({ name: " Ann " })).toBe(true);
    expect(check({ name: "Ann", avatarUrl: null })).toBe(true);
    const errors = check({ name: "A\u202E", bio: "x\ny", avatarUrl: "javascript:x" });
    expect(Array.isArray(errors) && errors.map(e => e.field).sort()).toEqual([
      "avatarUrl",
      "bio",
      "name",
    ]);
    const long = check({ name: "x".repeat(9) });
    expect(Array.isArray(long) && long.map(e => e.type)).toEqual(["stringMax"]);
  });
});
