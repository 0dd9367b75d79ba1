import type { CatalogViews, CatalogViewsSettings, ViewDoc } from "./catalog-stats";
import type { CampaignChanged, DomainEvent } from "../events/domain";
import { viewStats } from "./read-model";
import type { Store } from "../store/store";

/**
 * The catalog's side of marketing: an active campaign makes its token `featured`
 * (featured = enough holders OR promoted). Built from marketing.activated / deactivated,
 * which arrive at least once and in any order: a campaign's events carry its version and
 * only a newer one changes the view, so a late event changes nothing. It runs inside its
 * batch's transaction (mixins/read-model.mixin.ts), on the stores of that transaction,
 * with the stats (lib/read-models/catalog-stats.ts), so `featured` always follows both.
 * An event that overtook tokens.created lands on the placeholder view and shows once the
 * token arrives.
 */
export class CatalogPromotions {
  constructor(
    private readonly views: Store<ViewDoc>,
    private readonly catalog: Pick<CatalogViews, "ensureView">,
    private readonly settings: CatalogViewsSettings,
  ) {}

  async changed(event: DomainEvent<CampaignChanged>): Promise<void> {
    const { tokenId, active, version } = event.data;
    const view = await this.catalog.ensureView(tokenId);
    if ((view.campaignVersion ?? 0) >= version) return;
    const { featured } = viewStats(
      view.holders,
      view.transfers,
      this.settings.featuredMinHolders,
      active,
    );
    await this.views.updateOne(
      { _id: tokenId },
      { $set: { promoted: active, campaignVersion: version, featured } },
    );
  }
}
