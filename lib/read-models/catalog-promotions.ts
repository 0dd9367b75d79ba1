import type { CatalogViews, CatalogViewsSettings, ViewDoc } from "./catalog-stats";
import type { CampaignChanged, DomainEvent } from "../events/domain";
import { viewStats } from "./read-model";
import type { Store } from "../store/store";

/**
 * The catalog's side of marketing: an active campaign makes its token `featured`
 * (featured = enough holders OR promoted). Built from marketing.activated / deactivated,
 * which arrive at least once and in any order: a campaign's events carry its version and
 * only a newer one changes the view, so a late or repeated event changes nothing. The
 * change is a compare-and-set on the view's `rev`, the same guard the stats take
 * (lib/read-models/catalog-stats.ts), so `featured` always follows both. An event that overtook
 * tokens.created lands on the placeholder view and shows once the token arrives.
 */

/** Compare-and-set rounds before giving up (the event is then redelivered). */
const MAX_ROUNDS = 50;

export class CatalogPromotions {
  constructor(
    private readonly views: Store<ViewDoc>,
    private readonly catalog: Pick<CatalogViews, "ensureView">,
    private readonly settings: CatalogViewsSettings,
  ) {}

  async changed(event: DomainEvent<CampaignChanged>): Promise<void> {
    const { tokenId, active, version } = event.data;
    await this.catalog.ensureView(tokenId);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const view = await this.views.findOne({ _id: tokenId });
      if (!view || (view.campaignVersion ?? 0) >= version) return;
      const { featured } = viewStats(
        view.holders,
        view.transfers,
        this.settings.featuredMinHolders,
        active,
      );
      const applied = await this.views.updateOne(
        { _id: tokenId, rev: view.rev },
        { $set: { promoted: active, campaignVersion: version, featured, rev: view.rev + 1 } },
      );
      if (applied) return;
    }
    throw new Error(`View ${tokenId} is too contended; the event will be redelivered`);
  }
}
