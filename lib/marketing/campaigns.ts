import { MARKETING_EVENTS, domainEvent, type CampaignChanged } from "../events/domain";
import { publishThenClear, type OutboxWriter } from "../messaging/outbox";
import { insertIfAbsent, type CollectionSpec, type Doc, type Store } from "../store/store";

/**
 * Marketing's campaigns: a token's promotion, on or off. Activating an active campaign
 * or deactivating an inactive one changes nothing, so both are idempotent without a
 * key (a saga's compensation may repeat either). Every change is a compare-and-set on
 * the campaign's `version` that sets an `unpublished` flag; its event
 * (marketing.activated / marketing.deactivated, the version in its id and data) goes to
 * the outbox, then the flag goes, and `recover()` finishes what a crash left between.
 * Consumers (the catalog) apply a campaign's events newest version first. No broker in
 * here: services/marketing.service.ts hands it its store and outbox.
 */

export interface Campaign {
  tokenId: string;
  active: boolean;
  /** What the creator means to spend on it (base units), when given. */
  budget: string | null;
  updatedAt: string | null;
}

export interface CampaignDoc extends Doc {
  /** The tokenId. */
  _id: string;
  tokenId: string;
  active: boolean;
  budget: string | null;
  version: number;
  updatedAt: string;
  unpublished?: true;
}

export const MARKETING_COLLECTIONS = {
  campaigns: { sparse: ["unpublished"] },
} satisfies Record<string, CollectionSpec>;

const toCampaign = (d: CampaignDoc): Campaign => ({
  tokenId: d.tokenId,
  active: d.active,
  budget: d.budget,
  updatedAt: d.updatedAt,
});

export class Campaigns {
  constructor(
    private readonly campaigns: Store<CampaignDoc>,
    private readonly outbox: OutboxWriter,
  ) {}

  async get(tokenId: string): Promise<Campaign> {
    const doc = await this.campaigns.findOne({ _id: tokenId });
    return doc ? toCampaign(doc) : { tokenId, active: false, budget: null, updatedAt: null };
  }

  /** Turns the token's campaign on; an active one stays as it is. */
  activate(tokenId: string, budget: string | null): Promise<Campaign> {
    return this.change(tokenId, true, budget);
  }

  /** Turns the token's campaign off; an inactive or absent one stays as it is. */
  deactivate(tokenId: string): Promise<Campaign> {
    return this.change(tokenId, false, null);
  }

  /** Writes the events a crash kept back. Returns how many. */
  async recover(): Promise<number> {
    const docs = await this.campaigns.find({ unpublished: true });
    for (const doc of docs) await this.publish(doc);
    return docs.length;
  }

  private async change(tokenId: string, active: boolean, budget: string | null): Promise<Campaign> {
    const updatedAt = new Date().toISOString();
    for (;;) {
      const cur = await this.campaigns.findOne({ _id: tokenId });
      if (!cur) {
        if (!active) return this.get(tokenId);
        const doc: CampaignDoc = {
          _id: tokenId,
          tokenId,
          active,
          budget,
          version: 1,
          updatedAt,
          unpublished: true,
        };
        if (await insertIfAbsent(this.campaigns, doc)) return this.publish(doc);
        continue; // another call made it first
      }
      if (cur.active === active) {
        // Nothing to change; an event a crash kept back still goes out.
        return cur.unpublished ? this.publish(cur) : toCampaign(cur);
      }
      const next = await this.campaigns.updateOne(
        { _id: tokenId, version: cur.version },
        {
          $set: {
            active,
            budget: active ? budget : cur.budget,
            version: cur.version + 1,
            updatedAt,
            unpublished: true,
          },
        },
      );
      if (next) return this.publish(next);
    }
  }

  /** The change's event into the outbox, then its flag off (a repeat writes the same event). */
  private async publish(doc: CampaignDoc): Promise<Campaign> {
    const data: CampaignChanged = {
      tokenId: doc.tokenId,
      active: doc.active,
      budget: doc.budget,
      version: doc.version,
    };
    const type = doc.active ? MARKETING_EVENTS.activated : MARKETING_EVENTS.deactivated;
    const event = domainEvent(type, `${doc.tokenId}:${doc.version}`, data);
    await publishThenClear(this.outbox, this.campaigns, doc, event);
    return toCampaign(doc);
  }
}
