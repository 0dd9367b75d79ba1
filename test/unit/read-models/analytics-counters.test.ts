import { beforeEach, describe, expect, it } from "vitest";
import {
  ANALYTICS_COLLECTIONS,
  AnalyticsCounters,
  COUNTERS,
  GLOBAL_ID,
  type CounterDoc,
} from "../../../lib/read-models/analytics-counters";
import { applyBatch } from "../../../lib/read-models/applied-events";
import type { DomainEvent } from "../../../lib/events/domain";
import type { Database } from "../../../lib/store/store";
import { TokenScript } from "../../helpers/channels";
import { failInTransaction } from "../../helpers/stores";
import { analyticsSummary } from "../../helpers/analytics";
import { readModelDatabase, received } from "../../helpers/read-models";

/**
 * Analytics' counters without a broker, over SQLite in memory, fed as the service feeds
 * them (mixins/read-model.mixin.ts): a delivery is one transaction that counts the batch
 * and records its eventIds. A crash at any write counts nothing; the redelivery counts
 * each event once.
 */

let db: Database;
let book: AnalyticsCounters;

beforeEach(() => {
  db = readModelDatabase(ANALYTICS_COLLECTIONS);
  book = new AnalyticsCounters(db.store<CounterDoc>(COUNTERS));
});

const deliver = (...events: DomainEvent[]) =>
  applyBatch(db, received(...events), (tx, fresh) =>
    new AnalyticsCounters(tx.store<CounterDoc>(COUNTERS)).count(fresh),
  );

const s = new TokenScript({ creatorId: "alice", totalSupply: "1000" });
const created = s.created();
const move = s.transfer("alice", "bob", "7");

describe("analytics counters", () => {
  it("counts a batch, each event once, repeats and redeliveries skipped", async () => {
    await deliver(created, move, s.transfer("bob", "carol", "2"), move);
    await deliver(move, created);
    expect(await book.summary()).toEqual(
      analyticsSummary({ tokens: 1, transfers: 2, volumeByToken: { [s.token.id]: "9" } }),
    );
    expect(await db.store(COUNTERS).findOne({ _id: GLOBAL_ID })).toMatchObject({ transfers: 2 });
  });

  // Every write of a batch that creates and changes counter documents.
  const writes = [
    ["a new counter document", COUNTERS, "insert"],
    ["a counter's change", COUNTERS, "updateOne"],
    ["the applied eventIds", "applied", "insertMany"],
  ] as const;

  for (const [what, collection, method] of writes) {
    it(`a crash at ${what} counts nothing, and the redelivery counts once`, async () => {
      await deliver(created);
      const before = await book.summary();
      const batch = [move, new TokenScript({ creatorId: "bob" }).created()];
      const crash = failInTransaction(db, collection, method);
      await expect(deliver(...batch)).rejects.toThrow(/crash point/);
      expect(crash.fired()).toBe(true);
      expect(await book.summary()).toEqual(before);
      await deliver(...batch);
      await deliver(...batch);
      expect(await book.summary()).toEqual(
        analyticsSummary({ tokens: 2, transfers: 1, volumeByToken: { [s.token.id]: "7" } }),
      );
    });
  }

  it("counts once when replicas deliver the same events at the same time", async () => {
    await Promise.allSettled([deliver(move), deliver(move), deliver(move)]);
    expect((await book.summary()).transfers).toBe(1);
  });

  it("ignores events of channels it does not count", async () => {
    const approval = { ...move, eventId: "evt_approved", type: "tokens.approved" as const };
    await deliver(approval);
    expect(await db.store(COUNTERS).count({})).toBe(0);
  });
});
