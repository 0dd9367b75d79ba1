import { beforeEach, describe, expect, it } from "vitest";
import {
  ANALYTICS_COLLECTIONS,
  AnalyticsCounters,
  GLOBAL_ID,
  type CounterDoc,
} from "../../../lib/read-models/analytics-counters";
import {
  APPLIED_COLLECTION,
  markApplied,
  type AppliedDoc,
} from "../../../lib/read-models/applied-events";
import type { DomainEvent } from "../../../lib/events/domain";
import { openNedbStore } from "../../../lib/store/nedb/nedb-store";
import type { Received } from "../../../lib/read-models/read-model";
import type { Store } from "../../../lib/store/store";
import { TokenScript } from "../../helpers/channels";
import { failOnce } from "../../helpers/stores";
import { analyticsSummary } from "../../helpers/analytics";

/**
 * Analytics' counters without a broker, over real NeDB stores in memory. A delivery is
 * count → recorded as applied → release (what mixins/read-model.mixin.ts does); a crash
 * between any two steps, then the redelivery on a new instance, counts each event once.
 */

let counters: Store<CounterDoc>;
let applied: Store<AppliedDoc>;
let book: AnalyticsCounters;

beforeEach(async () => {
  counters = await openNedbStore<CounterDoc>("counters", ANALYTICS_COLLECTIONS.counters);
  applied = await openNedbStore<AppliedDoc>("applied", APPLIED_COLLECTION.applied);
  book = new AnalyticsCounters(counters, applied);
});

const received = (...events: DomainEvent[]): Received[] =>
  events.map(event => ({ channel: event.type, event }));

/** One whole delivery, as the mixin runs it; `fresh` = not recorded as applied before. */
async function deliver(on: AnalyticsCounters, batch: Received[]): Promise<void> {
  const seen = new Set((await applied.find({})).map(d => d._id));
  const fresh = batch.filter(r => !seen.has(r.event.eventId));
  await on.count(fresh);
  await markApplied(applied, fresh);
  await on.release(batch);
}

const s = new TokenScript({ creatorId: "alice", totalSupply: "1000" });
const created = s.created();
const move = s.transfer("alice", "bob", "7");

describe("analytics counters", () => {
  it("counts a batch with one write per counter document", async () => {
    await deliver(book, received(created, move, s.transfer("bob", "carol", "2")));
    expect(await book.summary()).toEqual(
      analyticsSummary({ tokens: 1, transfers: 2, volumeByToken: { [s.token.id]: "9" } }),
    );
    expect(await counters.findOne({ _id: GLOBAL_ID })).toMatchObject({ rev: 1, pending: [] });
  });

  it("counts once when the handler died after counting, before recording it applied", async () => {
    await book.count(received(move)); // then the process died
    expect(await counters.count({ pending: move.eventId })).toBe(2);

    book = new AnalyticsCounters(counters, applied);
    await deliver(book, received(move));
    expect((await book.summary()).transfers).toBe(1);
    expect(await counters.count({ pending: move.eventId })).toBe(0);
  });

  it("releases what a handler that died after recording it applied left pending", async () => {
    await book.count(received(move));
    await markApplied(applied, received(move)); // then the process died
    await deliver(new AnalyticsCounters(counters, applied), received(move));
    expect((await book.summary()).transfers).toBe(1);
    expect(await counters.count({ pending: move.eventId })).toBe(0);
  });

  it("does not count an event a concurrent delivery already finished and released", async () => {
    await deliver(book, received(move));
    // A second delivery that looked up `applied` before the first recorded it.
    await new AnalyticsCounters(counters, applied).count(received(move));
    expect((await book.summary()).transfers).toBe(1);
  });

  it("counts nothing when the write fails, and the redelivery counts it once", async () => {
    failOnce(counters, "updateOne");
    await expect(deliver(book, received(move))).rejects.toThrow(/crash point/);
    expect((await book.summary()).transfers).toBe(0);
    await deliver(new AnalyticsCounters(counters, applied), received(move, move));
    expect((await book.summary()).volumeByToken).toEqual({ [s.token.id]: "7" });
  });

  it("ignores events of channels it does not count", async () => {
    const approval = { ...move, eventId: "evt_approved", type: "tokens.approved" as const };
    await deliver(book, received(approval));
    expect(await counters.count({})).toBe(0);
  });
});
