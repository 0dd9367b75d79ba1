import { describe, expect, it } from "vitest";
import { decideFault, parseFaults, rulesFor, FaultSpecError } from "../../../lib/shared/faults";

/** A dice that returns the given values in turn. */
const dice = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length];
};

describe("FAULTS parsing", () => {
  it("reads delays, aborts, shares and the retryable flag", () => {
    const rules = parseFaults(
      "catalog.list:delay=200ms:pct=50; users.get:abort=503 ;tokens.*:abort=500:retryable=true;" +
        "*.get:delay=1.5s;users.login:abort=503:retryable=false;users.me:abort=429",
    );
    expect(rules.map(r => [r.actions, r.delayMs, r.abort, r.pct])).toEqual([
      ["catalog.list", 200, undefined, 50],
      ["users.get", undefined, { code: 503, retryable: true }, 100],
      ["tokens.*", undefined, { code: 500, retryable: true }, 100],
      ["*.get", 1500, undefined, 100],
      ["users.login", undefined, { code: 503, retryable: false }, 100],
      ["users.me", undefined, { code: 429, retryable: false }, 100],
    ]);
  });

  it("treats unset and empty as no faults", () => {
    expect(parseFaults(undefined)).toEqual([]);
    expect(parseFaults("")).toEqual([]);
    expect(parseFaults(" ; ")).toEqual([]);
  });

  it.each([
    ["catalog.list", /needs delay=/],
    ["catalog.list:delay=200", /200ms or 1.5s/],
    ["catalog.list:delay=-1s", /200ms or 1.5s/],
    ["catalog.list:abort=200", /400-599/],
    ["catalog.list:abort=5033", /400-599/],
    ["catalog.list:abort=503:pct=101", /0 to 100/],
    ["catalog.list:abort=503:pct=", /0 to 100/],
    ["catalog.list:abort=503:retryable=yes", /true or false/],
    ["catalog.list:delay=1s:retryable=true", /abort only/],
    ["catalog.list:delay=1s:abort=503", /another for the abort/],
    ["catalog.list:abort=503:abort=504", /twice/],
    ["catalog.list:slow=1s", /unknown option "slow"/],
    [":abort=503", /action name/],
    ["catalog list:abort=503", /action name/],
  ])("refuses %s, naming the rule", (spec, reason) => {
    expect(() => parseFaults(spec)).toThrow(FaultSpecError);
    expect(() => parseFaults(spec)).toThrow(reason);
    expect(() => parseFaults(spec)).toThrow(spec);
  });
});

describe("FAULTS matching and decisions", () => {
  const rules = parseFaults(
    "catalog.*:delay=100ms:pct=50;catalog.list:abort=503:pct=10;v2.catalog.get:abort=404",
  );

  it("matches exact names and globs, versioned names being distinct", () => {
    expect(rulesFor(rules, "catalog.list").map(r => r.actions)).toEqual([
      "catalog.*",
      "catalog.list",
    ]);
    expect(rulesFor(rules, "catalog.get").map(r => r.actions)).toEqual(["catalog.*"]);
    expect(rulesFor(rules, "v2.catalog.get").map(r => r.actions)).toEqual(["v2.catalog.get"]);
    expect(rulesFor(rules, "catalogs.list")).toEqual([]);
    expect(rulesFor(rules, "users.get")).toEqual([]);
  });

  it("rolls each matching rule's share on its own", () => {
    // delay rule: 0.49 < 50 % hits; abort rule: 0.05 < 10 % hits
    expect(decideFault(rules, "catalog.list", dice(0.49, 0.05))).toEqual({
      delayMs: 100,
      abort: { code: 503, retryable: true },
    });
    expect(decideFault(rules, "catalog.list", dice(0.5, 0.1))).toEqual({ delayMs: 0 });
    expect(decideFault(rules, "users.get", dice(0))).toEqual({ delayMs: 0 });
  });

  it("hits about pct % of calls with Math.random", () => {
    const half = parseFaults("a.b:abort=503:pct=30");
    let hits = 0;
    for (let i = 0; i < 10_000; i++) if (decideFault(half, "a.b").abort) hits++;
    expect(hits).toBeGreaterThan(2700);
    expect(hits).toBeLessThan(3300);
  });

  it("never hits at pct=0 and always at pct=100", () => {
    const never = parseFaults("a.b:abort=503:pct=0");
    const always = parseFaults("a.b:abort=503");
    expect(decideFault(never, "a.b", dice(0)).abort).toBeUndefined();
    expect(decideFault(always, "a.b", dice(0.9999)).abort).toBeDefined();
  });
});

describe("FAULTS on events", () => {
  it("matches `@` rules to events only, and action rules to actions only", () => {
    const rules = parseFaults("@users.apiKeyRevoked:abort=503;*:delay=10ms;@users.*:delay=5ms");
    expect(rulesFor(rules, "@users.apiKeyRevoked").map(r => r.actions)).toEqual([
      "@users.apiKeyRevoked",
      "@users.*",
    ]);
    expect(rulesFor(rules, "users.get").map(r => r.actions)).toEqual(["*"]);
    expect(decideFault(rules, "@users.apiKeyRevoked")).toEqual({
      delayMs: 5,
      abort: { code: 503, retryable: true },
    });
    expect(decideFault(rules, "@users.walletsChanged")).toEqual({ delayMs: 5 });
  });
});
