import { MARKETING_EVENTS, domainEvent, type CampaignChanged } from "../events/domain";
import type { OutboxWriter } from "../messaging/outbox";
import type { CollectionSpec, Database, Doc, Store } from "../store/store";

/**
 * Marketing's campaigns: a token's promotion, on or off. Activating an active campaign
 * or deactivating an inactive one changes nothing, so both are idempotent without a
 * key (a saga's compensation may repeat either). Every change is one transaction of the
 * marketing database: the campaign at its next `version` and its event
 * (marketing.activated / marketing.deactivated, the version in its id and data) in the
 * outbox commit together, and the event is sent once committed. Consumers (the catalog)
 * apply a campaign's events newest version first. No broker in here:
 * services/marketing.service.ts hands it its database and outbox.
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
}

/** The collection's name, as a transaction names it. */
const CAMPAIGNS = "campaigns";

export const MARKETING_COLLECTIONS = {
  [CAMPAIGNS]: {},
} satisfies Record<string, CollectionSpec>;

const toCampaign = (d: CampaignDoc): Campaign => ({
  tokenId: d.tokenId,
  active: d.active,
  budget: d.budget,
  updatedAt: d.updatedAt,
});

export class Campaigns {
  private readonly campaigns: Store<CampaignDoc>;

  constructor(
    private readonly db: Database,
    private readonly outbox: OutboxWriter,
  ) {
    this.campaigns = db.store<CampaignDoc>(CAMPAIGNS);
  }

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

  /** The change and its event, in one transaction; sent once committed. */
  private async change(tokenId: string, active: boolean, budget: string | null): Promise<Campaign> {
    const { doc, send } = await this.db.transaction(async tx => {
      const campaigns = tx.store<CampaignDoc>(CAMPAIGNS);
      const cur = await campaigns.findOne({ _id: tokenId });
      // Nothing to change.
      if (cur?.active === active || (!cur && !active)) return { doc: cur, send: null };
      const doc: CampaignDoc = {
        _id: tokenId,
        tokenId,
        active,
        budget: active || !cur ? budget : cur.budget,
        version: (cur?.version ?? 0) + 1,
        updatedAt: new Date().toISOString(),
      };
      const { _id, ...fields } = doc;
      if (cur) await campaigns.updateOne({ _id }, { $set: fields });
      else await campaigns.insert(doc);
      return { doc, send: await this.outbox.writeIn(tx, [changed(doc)]) };
    });
    send?.();
    return doc ? toCampaign(doc) : this.get(tokenId);
  }
}

/** The event of a campaign at its version. */
function changed(doc: CampaignDoc) {
  const data: CampaignChanged = {
    tokenId: doc.tokenId,
    active: doc.active,
    budget: doc.budget,
    version: doc.version,
  };
  const type = doc.active ? MARKETING_EVENTS.activated : MARKETING_EVENTS.deactivated;
  return domainEvent(type, `${doc.tokenId}:${doc.version}`, data);
}
