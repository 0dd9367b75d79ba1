import type { ActionSchema, Service } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import AnalyticsService from "../../../services/analytics.service";
import TokensService from "../../../services/tokens.service";
import { channelsOf } from "../../../middlewares/channels";
import { TOKEN_EVENTS, type DomainEvent, type Token } from "../../../lib/events/domain";
import type { AnalyticsSummary } from "../../../lib/read-models/read-model";
import type { Meta } from "../../../lib/shared/context";
import type { DbMethods } from "../../../mixins/db.mixin";
import { TokenScript, sendAll } from "../../helpers/channels";
import { waitUntil } from "../../helpers/cluster";
import { withSettings, inFlightOf, testBroker } from "../../helpers/read-models";
import { analyticsSummary } from "../../helpers/analytics";

/**
 * The analytics service in a broker of its own, fed on the in-memory ("Fake") channels
 * adapter, by the real tokens service and by events sent as the write model sends them.
 */

describe("analytics service", () => {
  const broker = testBroker();
  broker.createService(AnalyticsService);
  broker.createService(TokensService);
  beforeAll(() => broker.start());
  afterAll(() => broker.stop());

  const summary = () => broker.call<AnalyticsSummary, object>("analytics.summary", {});
  const send = (events: DomainEvent[]) => sendAll(broker, events);
  /** Waits until what was sent is counted: the probe, created and deleted, leaves no trace. */
  const settle = async () => {
    const probe = new TokenScript({ creatorId: "probe" });
    const last = probe.deleted();
    await send([probe.created(), last]);
    // Applied in the order they arrive: once the probe's last event is, so is all before it.
    const svc = broker.getLocalService("analytics") as Service & DbMethods;
    const applied = () => svc.store("applied").count({ _id: last.eventId });
    await waitUntil(async () => (await applied()) === 1, 3000, 10);
    return summary();
  };

  it("starts at zero and ignores params it does not know", async () => {
    expect(await broker.call("analytics.summary", { anything: 1 })).toEqual(analyticsSummary());
  });

  it("counts the tokens the write model creates", async () => {
    const meta: Meta = { user: { id: "usr_ann" } };
    await broker.call<Token, object>(
      "tokens.create",
      { name: "Counted", symbol: "CNT", decimals: 0, initialSupply: "10" },
      { meta },
    );
    await waitUntil(async () => (await summary()).tokens === 1, 3000, 10);
    expect(await summary()).toEqual(analyticsSummary({ tokens: 1 }));
  });

  it("counts each event once however often it arrives, and skips what is not an event", async () => {
    const before = await settle();
    const s = new TokenScript({ creatorId: "alice", totalSupply: "100" });
    const events = [s.created(), s.transfer("alice", "bob", "7"), s.transfer("bob", "bob", "0")];
    await send(events);
    await channelsOf(broker).sendToChannel(TOKEN_EVENTS.created, "garbage");
    await channelsOf(broker).sendToChannel(TOKEN_EVENTS.transferred, { eventId: "x" });
    await send([...events].reverse());
    await send([s.deleted(), s.deleted()]);
    const after = await settle();
    expect(after).toEqual({
      ...before,
      transfers: before.transfers + 2,
      volumeByToken: { ...before.volumeByToken, [s.token.id]: "7" },
    });
  });
});

describe("analytics service settings", () => {
  const { broker, svc } = withSettings(AnalyticsService, {
    cacheTtl: 0,
    readModel: { group: "stats-b", maxInFlight: { "tokens.created": 4 } },
  });

  it("consumes in the group and with the in-flight counts of its settings", () => {
    expect(inFlightOf(broker, "analytics", "tokens.created", "stats-b")).toBe(4);
    expect(inFlightOf(broker, "analytics", "tokens.transferred", "stats-b")).toBe(200);
  });

  it("does not cache the summary when its TTL setting is 0", () => {
    expect((svc.schema.actions as Record<string, ActionSchema>).summary.cache).toBe(false);
  });
});
