import { describe, expect, it } from "vitest";
import {
  chooseVersion,
  normalizeVersion,
  parseTraffic,
  pickByWeight,
  TrafficSpecError,
  versionedActionName,
} from "../../../lib/observability/traffic";

const all = () => true;

describe("CANARY parsing", () => {
  it("reads weighted versions per service", () => {
    const cfg = parseTraffic("catalog:v1=90,v2=10; tokens:1=100 ,V3=0");
    expect([...cfg.entries()]).toEqual([
      [
        "catalog",
        [
          { version: "v1", weight: 90 },
          { version: "v2", weight: 10 },
        ],
      ],
      [
        "tokens",
        [
          { version: "v1", weight: 100 },
          { version: "v3", weight: 0 },
        ],
      ],
    ]);
    expect(parseTraffic(undefined).size).toBe(0);
    expect(parseTraffic("").size).toBe(0);
  });

  it.each([
    ["catalog", /catalog:v1=90,v2=10/],
    [":v1=1", /catalog:v1=90,v2=10/],
    ["catalog:v1", /must look like v2=10/],
    ["catalog:beta=10", /must look like v2=10/],
    ["catalog:v1=1=2", /must look like v2=10/],
    ["catalog:v1=-1,v2=3", /≥ 0/],
    ["catalog:v1=ten", /≥ 0/],
    ["catalog:v1=0,v2=0", /above 0/],
    ["catalog:v1=50,v1=50", /v1 is given twice/],
    ["catalog:v1=1;catalog:v2=1", /catalog is given twice/],
  ])("refuses %s", (spec, reason) => {
    expect(() => parseTraffic(spec)).toThrow(TrafficSpecError);
    expect(() => parseTraffic(spec)).toThrow(reason);
  });

  it("normalizes header values", () => {
    expect(normalizeVersion("v2")).toBe("v2");
    expect(normalizeVersion(" V2 ")).toBe("v2");
    expect(normalizeVersion("2")).toBe("v2");
    expect(normalizeVersion("v02")).toBe("v2");
    expect(normalizeVersion("latest")).toBeNull();
    expect(normalizeVersion("v2.1")).toBeNull();
    expect(normalizeVersion("")).toBeNull();
  });

  it("names v1 as the unversioned service and others with Moleculer's prefix", () => {
    expect(versionedActionName("catalog", "v1", "list")).toBe("catalog.list");
    expect(versionedActionName("catalog", "v2", "list")).toBe("v2.catalog.list");
  });
});

describe("version choice", () => {
  const cfg = parseTraffic("catalog:v1=90,v2=10");

  it("splits by weight at the boundaries", () => {
    expect(chooseVersion(cfg, "catalog", undefined, all, () => 0)).toEqual({
      kind: "version",
      version: "v1",
      pinned: false,
    });
    expect(chooseVersion(cfg, "catalog", undefined, all, () => 0.8999)).toMatchObject({
      version: "v1",
    });
    expect(chooseVersion(cfg, "catalog", undefined, all, () => 0.9)).toMatchObject({
      version: "v2",
    });
    expect(chooseVersion(cfg, "catalog", undefined, all, () => 0.99999)).toMatchObject({
      version: "v2",
    });
  });

  it("gives about the weight over many picks", () => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 20_000; i++) {
      const v = pickByWeight(cfg.get("catalog")!) ?? "none";
      counts[v] = (counts[v] ?? 0) + 1;
    }
    expect(counts.v2 / 20_000).toBeGreaterThan(0.08);
    expect(counts.v2 / 20_000).toBeLessThan(0.12);
  });

  it("pins the version a header asks for, even one weighted 0", () => {
    const dark = parseTraffic("catalog:v1=100,v2=0");
    expect(chooseVersion(dark, "catalog", "v2", all, () => 0)).toEqual({
      kind: "version",
      version: "v2",
      pinned: true,
    });
    expect(chooseVersion(dark, "catalog", "1", all, () => 0.99)).toMatchObject({
      version: "v1",
      pinned: true,
    });
    // A weight of 0 never gets split traffic.
    for (let i = 0; i < 100; i++) {
      expect(chooseVersion(dark, "catalog", undefined, all)).toMatchObject({ version: "v1" });
    }
  });

  it("refuses a malformed header and reports a pinned version that is down", () => {
    expect(chooseVersion(cfg, "catalog", "beta", all)).toEqual({
      kind: "bad-header",
      value: "beta",
    });
    expect(chooseVersion(cfg, "catalog", "v3", v => v !== "v3")).toEqual({
      kind: "unavailable",
      version: "v3",
    });
  });

  it("moves a down canary's share to the versions that are up", () => {
    const v1Down = (v: string) => v !== "v1";
    expect(chooseVersion(cfg, "catalog", undefined, v1Down, () => 0)).toMatchObject({
      version: "v2",
    });
    expect(chooseVersion(cfg, "catalog", undefined, () => false)).toEqual({ kind: "keep" });
  });

  it("leaves services that are not configured alone, header or not", () => {
    expect(chooseVersion(cfg, "users", "v2", all)).toEqual({ kind: "keep" });
    expect(chooseVersion(cfg, "users", undefined, all)).toEqual({ kind: "keep" });
    expect(chooseVersion(cfg, "catalog", "", all, () => 0)).toMatchObject({ pinned: false });
  });
});
