import type { TxStores } from "../store/store";
import {
  CATALOG_COLLECTIONS,
  type BalanceDoc,
  type CatalogPage,
  type CatalogStores,
  type CatalogViewsSettings,
  type ViewDoc,
} from "./catalog-documents";
import type {
  BalanceAfter,
  DomainEvent,
  Token,
  TokenCreated,
  TokenDeleted,
  TokenTransferred,
  TokenUpdated,
} from "../events/domain";
import {
  listQuery,
  listSort,
  toCatalogToken,
  viewStats,
  viewTokenFields,
  type CatalogFilter,
  type CatalogToken,
  type ViewTokenFields,
} from "./read-model";

/**
 * The catalog's read model of tokens (docs/architecture.md), built only from the tokens.* channels,
 * which arrive at least once and in no guaranteed order across channels. No broker in
 * here: services/catalog.service.ts hands it its stores and events.
 *
 * The event methods run inside the transaction of their batch (mixins/read-model.mixin.ts),
 * on that transaction's stores (`catalogStores(tx)`), and the batch's eventIds are
 * recorded as applied in the same transaction: a redelivery is skipped, and a crash
 * leaves none of the batch's changes. So each is plain reads and writes:
 *  - balances take the newest BalanceAfter.version (they arrive in any order);
 *  - the holder count moves by what that does to whether the account holds any;
 *  - the transfer count moves by the batch's transfers (each applied once);
 *  - token fields are guarded by occurredAt; a deletion leaves a tombstone.
 *
 * Stats are kept incrementally, not recounted: a recount of a token's transfers costs
 * O(its transfers) per event, so a burst on one token cost O(n²). Transfers are many and
 * all land on their token's view, so they are applied per token in batches: one write of
 * the view for all the transfers that arrived meanwhile.
 *
 * A view may exist before tokens.created (a transfer overtook it): such a placeholder
 * collects stats but is not visible until the token itself arrives.
 */

export { CATALOG_COLLECTIONS };
export type { BalanceDoc, CatalogPage, CatalogStores, CatalogViewsSettings, ViewDoc };

/** The catalog's collections, as a transaction (or the database) names them. */
export const catalogStores = (tx: TxStores): CatalogStores => ({
  views: tx.store<ViewDoc>("views"),
  balances: tx.store<BalanceDoc>("balances"),
});

export class CatalogViews {
  constructor(
    private readonly stores: CatalogStores,
    private readonly settings: CatalogViewsSettings,
  ) {}

  // -------------------------------------------------------------------------------------
  // Events, inside their batch's transaction: each applied once, late or early

  async created(event: DomainEvent<TokenCreated>): Promise<void> {
    const { token, balances = [] } = event.data;
    const view = await this.ensureView(token.id);
    // updated may have overtaken created: then created's older fields lose.
    if (!view.hasToken)
      await this.stores.views.updateOne(
        { _id: token.id },
        { $set: { ...viewTokenFields(token), hasToken: true, tokenAt: event.occurredAt } },
      );
    await this.countStats(token.id, await this.applyBalances(token.id, balances), 0);
  }

  async updated(event: DomainEvent<TokenUpdated>): Promise<void> {
    const { token } = event.data;
    await this.ensureView(token.id);
    await this.setToken(token, event.occurredAt);
  }

  async deleted(event: DomainEvent<TokenDeleted>): Promise<void> {
    const { tokenId } = event.data;
    await this.ensureView(tokenId);
    // A tombstone, so a late transfer or update cannot bring the token back.
    await this.stores.views.updateOne({ _id: tokenId }, { $set: { deleted: true } });
  }

  /**
   * Transfers that arrived together (each once): one pass over each token's view for
   * all of its transfers. Each balance takes the newest version among them (what
   * applying them one by one would leave).
   */
  async transferred(events: Array<DomainEvent<TokenTransferred>>): Promise<void> {
    const byToken = new Map<string, Array<DomainEvent<TokenTransferred>>>();
    for (const e of events)
      byToken.set(e.data.tokenId, [...(byToken.get(e.data.tokenId) ?? []), e]);
    for (const [tokenId, list] of byToken) {
      await this.ensureView(tokenId);
      const newest = new Map<string, BalanceAfter>();
      for (const e of list) {
        for (const b of e.data.balances ?? []) {
          const cur = newest.get(b.account);
          if (!cur || b.version > cur.version) newest.set(b.account, b);
        }
      }
      const holders = await this.applyBalances(tokenId, [...newest.values()]);
      await this.countStats(tokenId, holders, list.length);
    }
  }

  // -------------------------------------------------------------------------------------
  // Reads

  /** One page of the visible tokens matching `filter`, and how many match in all. */
  async list(
    filter: CatalogFilter,
    page: CatalogPage,
  ): Promise<{ rows: CatalogToken[]; total: number }> {
    const query = listQuery(filter);
    const [docs, total] = await Promise.all([
      this.stores.views.find(query, {
        sort: listSort(page.sort),
        limit: page.limit,
        offset: page.offset,
      }),
      this.stores.views.count(query),
    ]);
    return { rows: docs.map(d => toCatalogToken(d as ViewDoc & ViewTokenFields)), total };
  }

  /** A token's view: null when no event of it arrived yet; a placeholder or a tombstone as such. */
  find(tokenId: string): Promise<ViewDoc | null> {
    return this.stores.views.findOne({ _id: tokenId });
  }

  // -------------------------------------------------------------------------------------
  // Steps

  /** The token's view, a placeholder made now when no event of it came before. */
  async ensureView(tokenId: string): Promise<ViewDoc> {
    const found = await this.stores.views.findOne({ _id: tokenId });
    if (found) return found;
    const view: ViewDoc = {
      _id: tokenId,
      hasToken: false,
      deleted: false,
      tokenAt: "",
      holders: 0,
      transfers: 0,
      featured: false,
    };
    await this.stores.views.insert(view);
    return view;
  }

  private async setToken(token: Token, at: string): Promise<void> {
    await this.stores.views.updateOne(
      { _id: token.id, tokenAt: { $lte: at } },
      { $set: { ...viewTokenFields(token), hasToken: true, tokenAt: at } },
    );
  }

  /**
   * Each balance to its newer version; what that does to the holder count (an account
   * holds while its amount is not "0").
   */
  private async applyBalances(tokenId: string, balances: BalanceAfter[]): Promise<number> {
    const store = this.stores.balances;
    let holders = 0;
    for (const b of balances) {
      const _id = `${tokenId}/${b.account}`;
      const cur = await store.findOne({ _id });
      if (cur && cur.version >= b.version) continue;
      holders += Number(b.amount !== "0") - Number(cur !== null && cur.amount !== "0");
      if (cur) await store.updateOne({ _id }, { $set: { amount: b.amount, version: b.version } });
      else
        await store.insert({
          _id,
          tokenId,
          account: b.account,
          amount: b.amount,
          version: b.version,
        });
    }
    return holders;
  }

  /** Adds to the view's counts, and `featured` follows. */
  private async countStats(tokenId: string, holders: number, transfers: number): Promise<void> {
    if (holders === 0 && transfers === 0) return;
    const view = (await this.stores.views.findOne({ _id: tokenId }))!;
    await this.stores.views.updateOne(
      { _id: tokenId },
      {
        $set: viewStats(
          view.holders + holders,
          view.transfers + transfers,
          this.settings.featuredMinHolders,
          view.promoted,
        ),
      },
    );
  }
}
