import { beforeEach, describe, expect, it } from "vitest";
import { catalogInMemory } from "../../helpers/read-models";
import {
  MARKETING_EVENTS,
  SAGA_EVENTS,
  domainEvent,
  type CampaignChanged,
} from "../../../lib/events/domain";
import { ANALYTICS_RULES } from "../../../lib/read-models/read-model";
import { TokenScript } from "../../helpers/channels";

/**
 * The catalog's `featured` = enough holders OR an active campaign, from marketing's
 * events in any order and any number of times; and analytics' launch counters.
 */

const settings = { featuredMinHolders: 3 };
let catalog: ReturnType<typeof catalogInMemory>;
let views: ReturnType<typeof catalogInMemory>["views"];

beforeEach(() => {
  catalog = catalogInMemory(settings);
  views = catalog.views;
});

const campaign = (tokenId: string, active: boolean, version: number) =>
  domainEvent<CampaignChanged>(
    active ? MARKETING_EVENTS.activated : MARKETING_EVENTS.deactivated,
    `${tokenId}:${version}`,
    { tokenId, active, budget: null, version },
  );

const featured = async (tokenId: string) => (await views.find(tokenId))?.featured;

describe("catalog promotions", () => {
  it("features a token while its campaign is active, whatever its holders", async () => {
    const s = new TokenScript({ creatorId: "ann", totalSupply: "100" });
    await catalog.deliver(s.created());
    expect(await featured(s.token.id)).toBe(false);
    await catalog.deliver(campaign(s.token.id, true, 1));
    expect(await featured(s.token.id)).toBe(true);
    // A transfer changes the stats: the campaign still counts.
    await catalog.deliver(s.transfer("ann", "bob", "1"));
    expect(await views.find(s.token.id)).toMatchObject({ holders: 2, featured: true });
    await catalog.deliver(campaign(s.token.id, false, 2));
    expect(await featured(s.token.id)).toBe(false);
    const listed = await views.list({ featured: true }, { limit: 10, offset: 0 });
    expect(listed.total).toBe(0);
  });

  it("keeps the newest campaign change, however late or often the older ones come", async () => {
    const s = new TokenScript({ creatorId: "ann", totalSupply: "100" });
    await catalog.deliver(s.created());
    await catalog.deliver(campaign(s.token.id, false, 2));
    await catalog.deliver(campaign(s.token.id, true, 1)); // late
    await catalog.deliver({ ...campaign(s.token.id, true, 1), eventId: "again" }); // resent
    expect(await views.find(s.token.id)).toMatchObject({
      promoted: false,
      campaignVersion: 2,
      featured: false,
    });
  });

  it("keeps a campaign that came before its token, and shows it once the token arrives", async () => {
    const s = new TokenScript({ creatorId: "ann", totalSupply: "100" });
    await catalog.deliver(campaign(s.token.id, true, 1));
    expect((await views.list({}, { limit: 10, offset: 0 })).total).toBe(0); // a placeholder
    await catalog.deliver(s.created());
    const [row] = (await views.list({ featured: true }, { limit: 10, offset: 0 })).rows;
    expect(row).toMatchObject({ id: s.token.id, featured: true });
  });

  it("leaves a token with enough holders featured when its campaign ends", async () => {
    const s = new TokenScript({ creatorId: "ann", totalSupply: "100" });
    await catalog.deliver(s.created());
    await catalog.deliver(campaign(s.token.id, true, 1));
    await catalog.deliver(s.transfer("ann", "bob", "1"), s.transfer("ann", "cy", "1"));
    await catalog.deliver(campaign(s.token.id, false, 2));
    expect(await views.find(s.token.id)).toMatchObject({ holders: 3, featured: true });
  });
});

describe("analytics: launches by outcome", () => {
  it("counts the end of a launch saga under its outcome, and no other saga", () => {
    const ended = (sagaType: string, state: string) => ({
      sagaId: "s",
      sagaType,
      userId: "u",
      state,
    });
    expect(ANALYTICS_RULES[SAGA_EVENTS.completed](ended("launch", "completed"))).toEqual({
      counters: { launchesCompleted: 1 },
    });
    expect(ANALYTICS_RULES[SAGA_EVENTS.compensated](ended("launch", "compensated"))).toEqual({
      counters: { launchesCompensated: 1 },
    });
    expect(ANALYTICS_RULES[SAGA_EVENTS.failed](ended("launch", "failed"))).toEqual({
      counters: { launchesFailed: 1 },
    });
    expect(ANALYTICS_RULES[SAGA_EVENTS.completed](ended("purchase", "completed"))).toEqual({});
  });
});
