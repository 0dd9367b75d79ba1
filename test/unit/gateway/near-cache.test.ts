import { describe, expect, it } from "vitest";
import { NearCache } from "../../../lib/gateway/near-cache";

describe("NearCache", () => {
  const make = (ttlMs = 60_000, quietMs = 0) =>
    new NearCache({ ttlMs, maxEntries: 10, maxBytes: 10_000, quietMs });

  it("keeps answers until their token changes; a change drops every page", () => {
    const c = make();
    c.storeToken("tok_a", { id: "tok_a" }, c.begin());
    c.storeToken("tok_b", { id: "tok_b" }, c.begin());
    c.storeList('{"limit":20}', { rows: [] }, c.begin());
    c.changed(["tok_a"]);
    expect(c.getToken("tok_a")).toBeUndefined();
    expect(c.getToken("tok_b")).toEqual({ id: "tok_b" });
    expect(c.getList('{"limit":20}')).toBeUndefined();
  });

  it("does not store what a read got when a change came while it ran", () => {
    const c = make();
    const began = c.begin();
    c.changed(["tok_x"]);
    c.storeToken("tok_a", { id: "tok_a", stale: true }, began);
    c.storeList("page", { rows: [] }, began);
    expect(c.getToken("tok_a")).toBeUndefined();
    expect(c.getList("page")).toBeUndefined();
  });

  it("stores nothing of a changed token, nor any page, for a while after the change", async () => {
    const c = make(60_000, 100);
    c.changed(["tok_a"]);
    c.storeToken("tok_a", { id: "tok_a" }, c.begin());
    c.storeToken("tok_b", { id: "tok_b" }, c.begin());
    c.storeList("page", { rows: [] }, c.begin());
    expect(c.getToken("tok_a")).toBeUndefined();
    expect(c.getToken("tok_b")).toEqual({ id: "tok_b" });
    expect(c.getList("page")).toBeUndefined();
    await new Promise(r => setTimeout(r, 150));
    c.storeToken("tok_a", { id: "tok_a" }, c.begin());
    c.storeList("page", { rows: [] }, c.begin());
    expect(c.getToken("tok_a")).toEqual({ id: "tok_a" });
    expect(c.getList("page")).toEqual({ rows: [] });
  });

  it("is bounded in entries and off with a TTL of 0", () => {
    const c = make();
    for (let i = 0; i < 50; i++) c.storeToken(`tok_${i}`, { i }, c.begin());
    const kept = Array.from({ length: 50 }, (_, i) => c.getToken(`tok_${i}`)).filter(Boolean);
    expect(kept.length).toBeLessThanOrEqual(5);
    expect(make(0).enabled).toBe(false);
  });
});
