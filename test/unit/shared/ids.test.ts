import { describe, expect, it } from "vitest";
import { newId } from "../../../lib/shared/ids";

describe("ids", () => {
  it("are the prefix and 24 hex digits, distinct across many refills of the pool", () => {
    const ids = Array.from({ length: 5000 }, () => newId("trf"));
    for (const id of ids) expect(id).toMatch(/^trf_[0-9a-f]{24}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
