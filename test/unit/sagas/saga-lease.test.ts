import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { failInTransaction } from "../../helpers/stores";
import {
  Lease,
  Naps,
  SagaTakenOver,
  type LeaseOptions,
  type OnEnd,
} from "../../../lib/sagas/saga-lease";
import { newSagaDoc, SAGA_COLLECTIONS, type SagaDoc } from "../../../lib/sagas/saga-log";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import type { Database, Doc, Store } from "../../../lib/store/store";

/**
 * One engine's hold on one saga, over a real SQLite database in memory. Another engine is a
 * write to the same document (what its recovery's takeover writes), with no Lease of ours.
 */

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
let db: Database;
let store: Store<SagaDoc>;
let saga: SagaDoc;
const leases: Lease[] = [];

const OWNER: LeaseOptions = { owner: "engine-a", leaseMs: 60_000 };
const lease = (opts: Partial<LeaseOptions> = {}, doc = saga, onEnd?: OnEnd) => {
  const l = new Lease(db, doc, { ...OWNER, ...opts }, onEnd);
  leases.push(l);
  return l;
};
const stored = async () => (await store.findOne({ _id: saga._id }))!;

/** Another engine takes the saga over, as recovery does once the lease ran out. */
async function takeOver(owner = "engine-b"): Promise<SagaDoc> {
  for (;;) {
    const cur = await stored();
    const taken = await store.updateOne(
      { _id: cur._id, owner: cur.owner, version: cur.version },
      { $set: { owner, version: cur.version + 1, leaseUntil: Date.now() + 60_000 } },
    );
    if (taken) return taken; // else a renewal came first: read again
  }
}

beforeEach(async () => {
  db = SqliteDatabase.open({ ...SAGA_COLLECTIONS, events: {} });
  store = db.store<SagaDoc>("sagas");
  saga = newSagaDoc(
    { type: "test", steps: [{ name: "a" }, { name: "b" }] },
    { userId: "usr_ann", key: "k1", fingerprint: "fp", input: { n: 1 } },
    OWNER,
  );
  saga.updatedAt = new Date(Date.now() - 60_000).toISOString(); // written a minute ago
  await store.insert(saga);
});

afterEach(() => {
  for (const l of leases.splice(0)) l.close();
});

describe("Lease", () => {
  it("saves by compare-and-set on owner and version, extending the lease", async () => {
    const l = lease();
    const before = Date.now();
    await l.save({ state: "compensating" });
    const doc = await stored();
    expect(doc).toMatchObject({ state: "compensating", owner: "engine-a", version: 2 });
    expect(doc.leaseUntil).toBeGreaterThanOrEqual(before + OWNER.leaseMs);
    expect(Date.parse(doc.updatedAt)).toBeGreaterThanOrEqual(before);
    expect(l.doc).toEqual(doc);
  });

  it("makes its writes one at a time, each on the version the one before wrote", async () => {
    const l = lease();
    await Promise.all([
      l.save({ result: "first" }),
      l.save({ result: "second" }),
      l.save({ error: null }),
    ]);
    expect(await stored()).toMatchObject({ result: "second", version: 4 });
    expect(l.doc.version).toBe(4);
  });

  it("refuses to write once another engine took the saga, and leaves its write alone", async () => {
    const l = lease();
    await l.save({ result: "mine" });
    const theirs = await takeOver();
    const err = await l.save({ result: "stale" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SagaTakenOver);
    expect(err).toMatchObject({
      code: 503,
      type: "SERVICE_UNAVAILABLE",
      name: "SagaTakenOver",
      message: `Saga ${saga._id} was taken over by another node`,
    });
    await expect(l.end("completed")).rejects.toBeInstanceOf(SagaTakenOver); // and so on
    expect(await stored()).toEqual(theirs);
  });

  it("refuses a write unless both its owner and its version are the stored ones", async () => {
    // An engine that read the saga, at its version, without having taken it over.
    await expect(lease({ owner: "engine-b" }).save({ result: "x" })).rejects.toBeInstanceOf(
      SagaTakenOver,
    );
    expect(await stored()).toMatchObject({ owner: "engine-a", version: 1 });
    // Its own owner, on a version another writer moved.
    await store.update({ _id: saga._id }, { $set: { version: 7 } });
    await expect(lease().save({ result: "x" })).rejects.toBeInstanceOf(SagaTakenOver);
    expect(await stored()).toMatchObject({ version: 7 });
    expect((await stored()).result).toBeUndefined();
  });

  it("renews the lease on a timer while a call is out, leaving updatedAt as it was", async () => {
    await store.update({ _id: saga._id }, { $set: { leaseUntil: Date.now() + 150 } });
    const first = await stored();
    const l = lease({ leaseMs: 150 }); // renewed every 50 ms
    await sleep(250);
    const renewed = await stored();
    expect(renewed.version).toBeGreaterThan(first.version + 1);
    expect(renewed.leaseUntil).toBeGreaterThan(first.leaseUntil);
    expect(renewed.leaseUntil).toBeGreaterThan(Date.now()); // 250 ms on, a 150 ms lease holds
    expect(renewed.updatedAt).toBe(first.updatedAt);
    // The timer's writes went through the same chain: a save still finds its version.
    await l.save({ result: "after" });
    l.close();
    // A renewal the timer queued before close() still lands; none starts after it.
    await sleep(30);
    const closed = await stored();
    await sleep(120);
    expect(await stored()).toEqual(closed);
  });

  it("renews nothing once the saga was taken: the other's lease stands", async () => {
    lease({ leaseMs: 30 });
    await sleep(25);
    const theirs = await takeOver();
    await sleep(60);
    expect(await stored()).toEqual(theirs);
  });

  it("ends in one transaction with what onEnd writes: the final state and result, active off", async () => {
    let sent = 0;
    const l = lease({}, saga, async (tx, ended) => {
      await tx.store("events").insert({ _id: `end:${ended._id}`, state: ended.state });
      return () => void sent++;
    });
    await l.end("completed", { tokenId: "tok_1" }, { error: null });
    const doc = await stored();
    expect(doc).toMatchObject({
      state: "completed",
      result: { tokenId: "tok_1" },
      error: null,
      version: 2,
    });
    expect(doc).not.toHaveProperty("active");
    expect(await db.store("events").find({})).toEqual([
      { _id: `end:${saga._id}`, state: "completed" },
    ]);
    expect(sent).toBe(1);
    const other = lease({}, { ...saga, _id: "sag_2", key: "k2" });
    await store.insert({ ...saga, _id: "sag_2", key: "k2" });
    await other.end("failed");
    expect(await store.findOne({ _id: "sag_2" })).not.toHaveProperty("result");
  });

  it("leaves the saga running when the end's other write fails: neither commits", async () => {
    const crash = failInTransaction(db, "events", "insert");
    const l = lease({}, saga, async tx => {
      await tx.store<Doc>("events").insert({ _id: "end" });
      return () => undefined;
    });
    await expect(l.end("completed", { tokenId: "tok_1" })).rejects.toThrow(/crash point/);
    expect(crash.fired()).toBe(true);
    expect(await stored()).toMatchObject({ state: "running", active: true, version: 1 });
    expect(await db.store("events").count({})).toBe(0);
    // The next try ends it, at the version it still holds.
    await l.end("completed", { tokenId: "tok_1" });
    expect(await stored()).toMatchObject({ state: "completed", version: 2 });
    expect(await db.store("events").count({})).toBe(1);
  });

  it("refuses to end a saga another engine took over, writing nothing else", async () => {
    const l = lease({}, saga, async tx => {
      await tx.store<Doc>("events").insert({ _id: "end" });
      return () => undefined;
    });
    await takeOver();
    await expect(l.end("completed")).rejects.toBeInstanceOf(SagaTakenOver);
    expect(await db.store("events").count({})).toBe(0);
  });

  it("lets go at once when released, and only of a saga it still owns", async () => {
    const l = lease();
    await l.release();
    expect(await stored()).toMatchObject({ leaseUntil: 0, owner: "engine-a", version: 1 });
    const theirs = await takeOver();
    await l.release();
    expect(await stored()).toEqual(theirs);
  });
});

describe("Naps", () => {
  it("sleeps its time", async () => {
    const naps = new Naps();
    const start = Date.now();
    await naps.sleep(40);
    expect(Date.now() - start).toBeGreaterThanOrEqual(35);
    await naps.sleep(-5); // a negative backoff is no sleep
  });

  it("wakes every nap at once, and only those already asleep", async () => {
    const naps = new Naps();
    const woke: string[] = [];
    const long = [naps.sleep(60_000), naps.sleep(60_000)].map((p, i) =>
      p.then(() => woke.push(`nap${i}`)),
    );
    await sleep(10);
    expect(woke).toEqual([]);
    naps.wakeAll();
    await Promise.all(long);
    expect(woke).toEqual(["nap0", "nap1"]);
    naps.wakeAll(); // nobody asleep now
    let later = false;
    void naps.sleep(50).then(() => (later = true));
    await sleep(10);
    expect(later).toBe(false);
    await expect.poll(() => later).toBe(true);
  });
});
