import type { Service, ServiceSchema } from "moleculer";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { APPLIED_COLLECTION, type AppliedDoc } from "../../../lib/read-models/applied-events";
import { channelsOf } from "../../../middlewares/channels";
import type { DomainEvent } from "../../../lib/events/domain";
import type { Received } from "../../../lib/read-models/read-model";
import { DbMixin, type DbMethods, type DbVars } from "../../../mixins/db.mixin";
import type { TxStores } from "../../../lib/store/store";
import { failInTransaction } from "../../helpers/stores";
import {
  ReadModelMixin,
  type ReadModelMethods,
  type ReadModelSettings,
} from "../../../mixins/read-model.mixin";
import { waitUntil } from "../../helpers/cluster";
import { withSettings, inFlightOf, testBroker } from "../../helpers/read-models";

/**
 * The read-model consumer mixin in a broker of its own, on the in-memory ("Fake")
 * channels adapter, with a read model that only records what it is given.
 */

/** What the read model was handed: one entry per `apply` call, and per `settled`. */
let applies: Array<{ apply: string; ids: string[] }>;
let settles: Array<{ batch: string[]; fresh: string[] }>;
/** eventIds whose apply fails once (a crash halfway). */
let failing: Set<string>;

const ids = (rs: Received[]) => rs.map(r => r.event.eventId);

let rowSeq = 0;

/** Records what it is handed, and writes each event as a `things` row in the batch's transaction. */
function recorder(name: string) {
  return async (fresh: Received[], tx: TxStores) => {
    applies.push({ apply: name, ids: ids(fresh) });
    const rows = fresh.map(r => ({ _id: `row_${++rowSeq}`, eventId: r.event.eventId }));
    await tx.store("things").insertMany(rows);
    const bad = fresh.find(r => failing.delete(r.event.eventId));
    if (bad) throw new Error(`apply failed: ${bad.event.eventId}`);
  };
}
const keyed = recorder("keyed");

const settings: ReadModelSettings = {
  readModel: { group: "models", maxInFlight: { "things.made": 7 } },
};

const Model: ServiceSchema<ReadModelSettings> = {
  name: "model",
  mixins: [
    DbMixin({ things: { indexes: ["eventId"] }, ...APPLIED_COLLECTION }),
    ReadModelMixin({
      channels: {
        // Two channels sharing a key and an apply: what arrives together goes together.
        "things.made": { key: e => (e.data as { thing: string }).thing, apply: keyed },
        "things.moved": { key: e => (e.data as { thing: string }).thing, apply: keyed },
        "things.named": { apply: recorder("alone") },
      },
      async settled(batch, fresh) {
        settles.push({ batch: ids(batch), fresh: ids(fresh) });
      },
    }),
  ],
  settings,
};

type ModelService = Service & ReadModelMethods & DbMethods & DbVars;

let n = 0;
const event = (type: string, thing = "t1"): DomainEvent => ({
  eventId: `evt_${++n}`,
  type: type as DomainEvent["type"], // a test channel, not one of the platform's
  occurredAt: new Date().toISOString(),
  data: { thing },
});

describe("ReadModelMixin", () => {
  const broker = testBroker();
  const svc = broker.createService(Model) as ModelService; // with its mixed-in parts
  const applied = () => svc.store<AppliedDoc>("applied");

  beforeAll(() => broker.start());
  afterAll(() => broker.stop());
  beforeEach(() => {
    applies = [];
    settles = [];
    failing = new Set();
  });

  it("subscribes every channel in the group and with the in-flight count its settings name", () => {
    expect(inFlightOf(broker, "model", "things.made", "models")).toBe(7);
    // Not named: the adapter's default (one at a time).
    expect(inFlightOf(broker, "model", "things.moved", "models")).toBe(1);
    expect(inFlightOf(broker, "model", "things.named", "models")).toBe(1);
  });

  it("applies what arrives on the channels, and records it as applied", async () => {
    const e = event("things.named");
    await channelsOf(broker).sendToChannel("things.named", e);
    await waitUntil(async () => (await applied().count({ _id: e.eventId })) === 1, 2000, 5);
    expect(applies).toEqual([{ apply: "alone", ids: [e.eventId] }]);
    expect(await applied().findOne({ _id: e.eventId })).toMatchObject({ type: "things.named" });
  });

  it("applies events with one key that arrive together in one call, whatever their channel", async () => {
    const [a, b, c, other] = [
      event("things.made"),
      event("things.moved"),
      event("things.made"),
      event("things.made", "t2"),
    ];
    await Promise.all([
      svc.receiveEvent("things.made", a),
      svc.receiveEvent("things.moved", b),
      svc.receiveEvent("things.made", c),
      svc.receiveEvent("things.made", other),
    ]);
    expect(applies).toEqual([
      { apply: "keyed", ids: [a.eventId, b.eventId, c.eventId] },
      { apply: "keyed", ids: [other.eventId] },
    ]);
  });

  it("applies each event of a channel without a key alone", async () => {
    const [a, b] = [event("things.named"), event("things.named")];
    await Promise.all([svc.receiveEvent("things.named", a), svc.receiveEvent("things.named", b)]);
    expect(applies).toEqual([
      { apply: "alone", ids: [a.eventId] },
      { apply: "alone", ids: [b.eventId] },
    ]);
  });

  it("skips events applied before and repeats within a batch, and settles the whole batch", async () => {
    const [old, fresh] = [event("things.made"), event("things.made")];
    await svc.receiveEvent("things.made", old);
    applies = [];
    settles = [];
    await Promise.all([
      svc.receiveEvent("things.made", old),
      svc.receiveEvent("things.made", fresh),
      svc.receiveEvent("things.made", fresh),
    ]);
    expect(applies).toEqual([{ apply: "keyed", ids: [fresh.eventId] }]);
    expect(settles).toEqual([{ batch: [old.eventId, fresh.eventId], fresh: [fresh.eventId] }]);

    await svc.receiveEvent("things.made", fresh);
    expect(applies).toHaveLength(1);
  });

  it("records nothing of a batch whose apply fails, so the redelivery applies it", async () => {
    const e = event("things.made");
    failing.add(e.eventId);
    await expect(svc.receiveEvent("things.made", e)).rejects.toThrow(/apply failed/);
    expect(await applied().count({ _id: e.eventId })).toBe(0);
    expect(settles).toEqual([]);

    await svc.receiveEvent("things.made", e);
    expect(applies.map(a => a.ids)).toEqual([[e.eventId], [e.eventId]]);
    expect(await applied().count({ _id: e.eventId })).toBe(1);
  });

  for (const [what, collection, method] of [
    ["the read model's change", "things", "insertMany"],
    ["the record of the eventIds", "applied", "insertMany"],
  ] as const)
    it(`commits nothing of a batch that crashes at ${what}; the redelivery applies it once`, async () => {
      const [a, b] = [event("things.made"), event("things.moved")];
      const crash = failInTransaction(svc.database, collection, method);
      const batch = () =>
        Promise.all([svc.receiveEvent("things.made", a), svc.receiveEvent("things.moved", b)]);
      await expect(batch()).rejects.toThrow(/crash point/);
      expect(crash.fired()).toBe(true);
      const rows = (id: string) => svc.store("things").count({ eventId: id });
      expect([await rows(a.eventId), await rows(b.eventId)]).toEqual([0, 0]);
      expect(await applied().count({ _id: { $in: [a.eventId, b.eventId] } })).toBe(0);
      expect(settles).toEqual([]);
      await batch();
      await batch();
      expect([await rows(a.eventId), await rows(b.eventId)]).toEqual([1, 1]);
      expect(await applied().count({ _id: { $in: [a.eventId, b.eventId] } })).toBe(2);
    });

  it("skips a redelivery inside the retention window and forgets an event past it", async () => {
    const [recent, old] = [event("things.named"), event("things.named")];
    await svc.receiveEvent("things.named", recent);
    await svc.receiveEvent("things.named", old);
    // Applied 8 days ago, as far as its record says.
    const longAgo = new Date(Date.now() - 8 * 24 * 3600_000).toISOString();
    await applied().update({ _id: old.eventId }, { $set: { appliedAt: longAgo } });
    expect(await svc.pruneApplied()).toBe(1);
    applies = [];
    await svc.receiveEvent("things.named", recent);
    await svc.receiveEvent("things.named", old);
    expect(applies).toEqual([{ apply: "alone", ids: [old.eventId] }]);
  });

  it("logs a malformed message once and acknowledges it, on the channel as when called", async () => {
    const logged = vi.spyOn(svc.logger, "error");
    await expect(svc.receiveEvent("things.made", { eventId: "" })).resolves.toBeUndefined();
    await channelsOf(broker).sendToChannel("things.named", "not an event");
    await waitUntil(() => logged.mock.calls.length === 2, 2000, 5);
    expect(logged.mock.calls).toEqual([
      [{ channel: "things.made" }, "Malformed event skipped"],
      [{ channel: "things.named" }, "Malformed event skipped"],
    ]);
    expect(applies).toEqual([]);
  });
});

describe("ReadModelMixin settings", () => {
  const { broker } = withSettings(Model, {
    readModel: { group: "elsewhere", maxInFlight: { "things.moved": 3 } },
  });

  it("takes the group and in-flight counts from the settings the service was given", () => {
    expect(inFlightOf(broker, "model", "things.made", "models")).toBeUndefined();
    expect(inFlightOf(broker, "model", "things.made", "elsewhere")).toBe(7);
    expect(inFlightOf(broker, "model", "things.moved", "elsewhere")).toBe(3);
  });
});
