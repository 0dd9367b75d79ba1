import { describe, expect, it } from "vitest";
import { TOKEN_EVENTS, type Token } from "../../../lib/events/domain";
import {
  ANALYTICS_RULES,
  addAmounts,
  addCounters,
  emptyCounters,
  freshStats,
  isDomainEvent,
  listQuery,
  listSort,
  prefixPattern,
  viewTokenFields,
} from "../../../lib/read-models/read-model";

describe("prefixPattern", () => {
  const samples = [
    "a",
    "ab",
    "abc",
    "ac",
    "",
    "ab\uffff",
    "ab\u{1F600}",
    "a\u{1F601}",
    "\uffff",
    "\uffffx",
    "ab\ud7ffz",
    "é",
    "a.b",
    "axb",
    "(x)|y",
    "x",
    "[a]\\",
    "$^*+?{}",
    "c/d-e",
  ];
  it.each([
    "ab",
    "a",
    "é",
    "a\u{1F600}",
    "ab\ud7ff",
    "\uffff",
    "a.b",
    "(x)|",
    "[a]\\",
    "$^*+?{}",
    "c/d-",
  ])("matches exactly the strings starting with %j", q => {
    const re = prefixPattern(q);
    for (const s of samples) expect(re.test(s), JSON.stringify(s)).toBe(s.startsWith(q));
  });
});

describe("catalog list query", () => {
  it("lists only created, undeleted views and searches lowercase name or symbol", () => {
    expect(listQuery({ q: "AbC", creator: "usr_1", featured: true })).toEqual({
      hasToken: true,
      deleted: false,
      creatorId: "usr_1",
      featured: true,
      $or: [{ nameLower: { $regex: /^abc/ } }, { symbolLower: { $regex: /^abc/ } }],
    });
    expect(listQuery({ q: "" })).toEqual({ hasToken: true, deleted: false });
  });

  it("sorts most or newest first with a stable tie-break", () => {
    expect(listSort()).toEqual({ createdAt: -1, _id: -1 });
    expect(listSort("holders")).toEqual({ holders: -1, createdAt: -1, _id: -1 });
    expect(listSort("transfers")).toEqual({ transfers: -1, createdAt: -1, _id: -1 });
  });
});

describe("catalog views", () => {
  const token: Token = {
    id: "tok_1",
    name: "Mixed Case",
    symbol: "MXC",
    decimals: 18,
    totalSupply: "100",
    creatorId: "usr_1",
    metadata: {},
    createdAt: "2030-01-01T00:00:00.000Z",
  };

  it("keeps lowercase copies for search", () => {
    expect(viewTokenFields(token)).toMatchObject({ nameLower: "mixed case", symbolLower: "mxc" });
  });

  it("gives a token not consumed yet its creator as the only holder", () => {
    expect(freshStats(token, 3)).toEqual({ holders: 1, transfers: 0, featured: false });
    expect(freshStats({ ...token, totalSupply: "0" }, 3)).toEqual({
      holders: 0,
      transfers: 0,
      featured: false,
    });
    expect(freshStats(token, 3, { holders: 4, transfers: 9 })).toEqual({
      holders: 4,
      transfers: 9,
      featured: true,
    });
  });
});

describe("analytics arithmetic", () => {
  it("adds amounts exactly beyond 2^256", () => {
    const max = ((1n << 256n) - 1n).toString();
    expect(addAmounts(max, max)).toBe(((1n << 257n) - 2n).toString());
    expect(addAmounts("0", "7")).toBe("7");
    expect(() => addAmounts("1.5", "1")).toThrow();
    expect(() => addAmounts("-1", "1")).toThrow();
  });

  it("maps each counted channel to its delta", () => {
    expect(ANALYTICS_RULES[TOKEN_EVENTS.created]({})).toEqual({ counters: { tokens: 1 } });
    expect(ANALYTICS_RULES[TOKEN_EVENTS.deleted]({})).toEqual({ counters: { tokens: -1 } });
    expect(ANALYTICS_RULES[TOKEN_EVENTS.transferred]({ tokenId: "tok_1", amount: "5" })).toEqual({
      counters: { transfers: 1 },
      volume: { tokenId: "tok_1", amount: "5" },
    });
    expect(ANALYTICS_RULES[TOKEN_EVENTS.approved]).toBeUndefined();
  });

  it("adds counter deltas", () => {
    expect(addCounters(emptyCounters(), { tokens: 2, sales: 1, launchesFailed: 1 })).toEqual({
      tokens: 2,
      transfers: 0,
      nftsMinted: 0,
      sales: 1,
      launchesCompleted: 0,
      launchesCompensated: 0,
      launchesFailed: 1,
    });
  });
});

describe("isDomainEvent", () => {
  it("accepts the envelope and rejects what is not one", () => {
    const ok = { eventId: "e1", type: "tokens.created", occurredAt: "", data: {} };
    expect(isDomainEvent(ok)).toBe(true);
    expect(isDomainEvent({ ...ok, eventId: "" })).toBe(false);
    expect(isDomainEvent({ ...ok, data: null })).toBe(false);
    expect(isDomainEvent("tokens.created")).toBe(false);
    expect(isDomainEvent(null)).toBe(false);
  });
});
