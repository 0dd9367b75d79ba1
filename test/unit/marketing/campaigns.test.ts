import { beforeEach, describe, expect, it } from "vitest";
import { Campaigns, MARKETING_COLLECTIONS } from "../../../lib/marketing/campaigns";
import { MARKETING_EVENTS, type DomainEvent } from "../../../lib/events/domain";
import { OUTBOX_COLLECTION, Outbox } from "../../../lib/messaging/outbox";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import type { Database } from "../../../lib/store/store";
import { quiet } from "../../helpers/ledger";
import { failInTransaction } from "../../helpers/stores";

/**
 * Marketing's campaigns without a broker, over SQLite in memory: each change and its
 * event commit in one transaction, so a crash at any of its writes leaves neither, and
 * the repeat (a saga's retry) changes the campaign and sends its event once.
 */

let db: Database;
let outbox: Outbox;
let published: DomainEvent[];
let campaigns: Campaigns;

beforeEach(() => {
  db = SqliteDatabase.open({ ...MARKETING_COLLECTIONS, ...OUTBOX_COLLECTION });
  published = [];
  outbox = new Outbox(
    db.store("outbox"),
    { ready: () => true, publish: async (_type, event) => void published.push(event) },
    quiet,
  );
  campaigns = new Campaigns(db, outbox);
});

const sent = async () => {
  await outbox.flush();
  return published.map(e => e.eventId);
};

describe("campaigns", () => {
  it("turns a campaign on and off once however often each is asked, an event per change", async () => {
    expect(await campaigns.deactivate("tok_1")).toMatchObject({ active: false, updatedAt: null });
    await campaigns.activate("tok_1", "500");
    expect(await campaigns.activate("tok_1", "900")).toMatchObject({ active: true, budget: "500" });
    await campaigns.deactivate("tok_1");
    expect(await campaigns.deactivate("tok_1")).toMatchObject({ active: false, budget: "500" });
    expect(await sent()).toEqual([
      `${MARKETING_EVENTS.activated}:tok_1:1`,
      `${MARKETING_EVENTS.deactivated}:tok_1:2`,
    ]);
  });

  // Each write of a change, as the place a crash stops it: a new campaign, a changed one.
  const writes = [
    ["the new campaign", "campaigns", "insert", false],
    ["the campaign's change", "campaigns", "updateOne", true],
    ["the event", "outbox", "insertMany", true],
  ] as const;

  for (const [what, collection, method, existing] of writes) {
    it(`a crash at ${what} leaves neither the change nor its event; the repeat makes both once`, async () => {
      if (existing) {
        await campaigns.activate("tok_2", "5");
        await campaigns.deactivate("tok_2");
      }
      const before = await campaigns.get("tok_2");
      const eventsBefore = await sent();
      const crash = failInTransaction(db, collection, method);
      await expect(campaigns.activate("tok_2", "7")).rejects.toThrow(/crash point/);
      expect(crash.fired()).toBe(true);
      expect(await campaigns.get("tok_2")).toEqual(before);
      expect(await db.store("outbox").count({})).toBe(0);

      // A new process has nothing to recover; the saga's retry activates it once.
      campaigns = new Campaigns(db, outbox);
      await campaigns.activate("tok_2", "7");
      await campaigns.activate("tok_2", "7");
      expect(await campaigns.get("tok_2")).toMatchObject({ active: true, budget: "7" });
      const version = existing ? 3 : 1;
      expect(await sent()).toEqual([
        ...eventsBefore,
        `${MARKETING_EVENTS.activated}:tok_2:${version}`,
      ]);
    });
  }
});
