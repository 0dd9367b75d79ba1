import { describe, expect, it } from "vitest";
import { newDeliveryId } from "../../../lib/webhooks/documents";

describe("lib/webhooks/documents", () => {
  it("makes delivery ids that sort by creation, also within one millisecond", () => {
    const now = Date.now();
    const ids = [
      newDeliveryId(now),
      newDeliveryId(now),
      newDeliveryId(now),
      newDeliveryId(now + 1),
    ];
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
