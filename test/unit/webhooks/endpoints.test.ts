import { describe, expect, it } from "vitest";
import { rowsOfRecorded } from "../../../lib/webhooks/endpoints";
import { activityRow } from "../../helpers/webhooks";

describe("rowsOfRecorded", () => {
  it("takes a batch of rows, and a row alone (the shape published before batches)", () => {
    const [a, b] = [activityRow("usr_a", "transfer.in"), activityRow("usr_b", "transfer.out")];
    expect(rowsOfRecorded({ rows: [a, b] })).toEqual({ rows: [a, b], malformed: 0 });
    expect(rowsOfRecorded(a)).toEqual({ rows: [a], malformed: 0 });
  });

  it("leaves out and counts what is not a row", () => {
    const a = activityRow("usr_a", "transfer.in");
    expect(rowsOfRecorded({ rows: [a, { id: 1 }, null] })).toEqual({ rows: [a], malformed: 2 });
    expect(rowsOfRecorded(null)).toEqual({ rows: [], malformed: 1 });
    expect(rowsOfRecorded({ id: "x" })).toEqual({ rows: [], malformed: 1 });
  });
});
