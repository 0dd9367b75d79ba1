import { afterEach, describe, expect, it, vi } from "vitest";
import { Lru, jsonSize } from "../../../lib/shared/lru";

describe("lib/lru", () => {
  afterEach(() => vi.useRealTimers());

  it("keeps at most maxEntries, dropping the least recently used", () => {
    const lru = new Lru<string, number>({ maxEntries: 3 });
    lru.set("a", 1);
    lru.set("b", 2);
    lru.set("c", 3);
    expect(lru.get("a")).toBe(1); // a is now the most recent
    lru.set("d", 4);
    expect([...lru.keys()]).toEqual(["c", "a", "d"]);
    expect(lru.has("b")).toBe(false);
  });

  it("keeps at most maxSize in all, and never a value larger than maxSize alone", () => {
    const lru = new Lru<string, string>({ maxEntries: 100, maxSize: 10, sizeOf: v => v.length });
    lru.set("a", "xxxx");
    lru.set("b", "xxxx");
    lru.set("c", "xxxx");
    expect([...lru.keys()]).toEqual(["b", "c"]);
    expect(lru.totalSize).toBe(8);
    expect(lru.set("big", "x".repeat(11))).toBe(false);
    expect(lru.has("big")).toBe(false);
    lru.set("b", "x");
    expect(lru.totalSize).toBe(5);
    lru.delete("c");
    expect(lru.totalSize).toBe(1);
  });

  it("forgets entries past their time to live, the default or their own", () => {
    vi.useFakeTimers();
    const lru = new Lru<string, number>({ maxEntries: 10, ttlMs: 1000 });
    lru.set("short", 1);
    lru.set("long", 2, { ttlMs: 5000 });
    lru.set("forever", 3, { ttlMs: 0 });
    vi.advanceTimersByTime(1001);
    expect(lru.get("short")).toBeUndefined();
    expect(lru.get("long")).toBe(2);
    vi.advanceTimersByTime(5000);
    lru.purgeStale();
    expect([...lru.keys()]).toEqual(["forever"]);
  });

  it("sizes a value by the length of its JSON", () => {
    expect(jsonSize({ a: "xyz" })).toBe('{"a":"xyz"}'.length);
    expect(jsonSize(undefined)).toBe(0);
  });
});
