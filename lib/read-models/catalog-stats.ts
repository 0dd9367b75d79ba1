import { pruneOlderThan, insertIfAbsent } from "../store/store";
import {
  CATALOG_COLLECTIONS,
  type BalanceDoc,
  type CatalogPage,
  type CatalogStores,
  type CatalogViewsSettings,
  type TransferDoc,
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
  holderFlip,
  holderKey,
  listQuery,
  listSort,
  parseStatsKey,
  toCatalogToken,
  transferKey,
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
 * Every effect is idempotent by construction, so a redelivery (or a crash halfway
 * through a handler) can never count twice:
 *  - balances are compare-and-set on BalanceAfter.version (newest wins);
 *  - a transfer is a row keyed by transferId;
 *  - token fields are guarded by occurredAt; a deletion leaves a tombstone.
 * Applied eventIds are remembered too (mixins/read-model.mixin.ts), so a duplicate is
 * skipped without any work.
 *
 * Stats (holders, transfers) are maintained incrementally, not recounted: a recount of a
 * token's transfers costs O(its transfers) per event, so a burst on one token cost
 * O(n²) and the catalog fell behind for good. Each change is keyed (lib/read-model
 * StatsKey) and applied the way analytics applies counters, so it lands exactly once
 * even across a crash or two replicas handling the same event:
 *  1. a compare-and-set on the view's `rev` changes the counts and pushes the keys onto
 *     `pending`, after checking that neither `pending` nor the source (the transfer row,
 *     the balance's `flips`) has them yet;
 *  2. the sources are written: the transfer row inserted, the balance's `flips` moved on;
 *  3. the keys are pulled from `pending`.
 * A handler that dies between 1 and 3 leaves its keys in `pending`; its redelivery, the
 * next event of that token, or the sweep at start-up finishes them (step 2 is
 * idempotent). Checking `pending` before the source, then writing on an unchanged `rev`,
 * closes the window where another handler finishes the same key in between.
 *
 * A view may exist before tokens.created (a transfer overtook it): such a placeholder
 * collects stats but is not visible until the token itself arrives.
 *
 * Transfers are many and all land on their token's view, so they are taken many at a
 * time and applied per token in batches: one pass of the steps above for all the
 * transfers that arrived meanwhile. One by one, the view fell behind the ledger under
 * load. A transfer's row in `transfers` is what marks it counted, in a batch as alone.
 */

export { CATALOG_COLLECTIONS };
export type { BalanceDoc, CatalogPage, CatalogStores, CatalogViewsSettings, TransferDoc, ViewDoc };

type Logger = Record<"info" | "warn", (obj: object, msg: string) => void>;

const quiet: Logger = { info: () => undefined, warn: () => undefined };

/** Stats compare-and-set rounds before giving up (the event is then redelivered). */
const MAX_STATS_ROUNDS = 50;

export class CatalogViews {
  constructor(
    private readonly stores: CatalogStores,
    private readonly settings: CatalogViewsSettings,
    private readonly logger: Logger = quiet,
  ) {}

  // -------------------------------------------------------------------------------------
  // Events: each may come again, late or early

  async created(event: DomainEvent<TokenCreated>): Promise<void> {
    const { token, balances = [] } = event.data;
    await this.ensureView(token.id);
    // updated may have overtaken created: then created's older fields lose.
    await this.setToken(token.id, token, event.occurredAt, true);
    await this.applyBalances(token.id, balances);
    await this.settleStats(
      token.id,
      [],
      balances.map(b => b.account),
    );
  }

  async updated(event: DomainEvent<TokenUpdated>): Promise<void> {
    const { token } = event.data;
    await this.ensureView(token.id);
    await this.setToken(token.id, token, event.occurredAt, false);
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
   * applying them one by one would leave), and the stats count every transfer not
   * counted yet.
   */
  async transferred(events: Array<DomainEvent<TokenTransferred>>): Promise<void> {
    const byToken = new Map<string, Array<DomainEvent<TokenTransferred>>>();
    for (const e of events) {
      const list = byToken.get(e.data.tokenId) ?? [];
      list.push(e);
      byToken.set(e.data.tokenId, list);
    }
    for (const [tokenId, list] of byToken) {
      await this.ensureView(tokenId);
      const newest = new Map<string, BalanceAfter>();
      for (const e of list) {
        for (const b of e.data.balances ?? []) {
          const cur = newest.get(b.account);
          if (!cur || b.version > cur.version) newest.set(b.account, b);
        }
      }
      await this.applyBalances(tokenId, [...newest.values()]);
      // The transfer rows are written by settleStats, as the mark that they are counted.
      await this.settleStats(
        tokenId,
        list.map(e => e.data.transferId),
        [...newest.keys()],
      );
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
  // Steps (public so a test can fail one of them to simulate a crash)

  async ensureView(tokenId: string): Promise<void> {
    if (await this.stores.views.findOne({ _id: tokenId })) return;
    // Another handler may make it first: then theirs is the one.
    await insertIfAbsent(this.stores.views, {
      _id: tokenId,
      hasToken: false,
      deleted: false,
      tokenAt: "",
      holders: 0,
      transfers: 0,
      featured: false,
      rev: 0,
      pending: [],
    });
  }

  async setToken(tokenId: string, token: Token, at: string, onlyIfNew: boolean): Promise<void> {
    const guard = onlyIfNew ? { hasToken: false } : { tokenAt: { $lte: at } };
    await this.stores.views.updateOne(
      { _id: tokenId, ...guard },
      { $set: { ...viewTokenFields(token), hasToken: true, tokenAt: at } },
    );
  }

  async applyBalances(tokenId: string, balances: BalanceAfter[]): Promise<void> {
    const store = this.stores.balances;
    // Different documents: side by side, so their writes share one trip to the disk.
    await Promise.all(
      balances.map(async b => {
        const _id = `${tokenId}/${b.account}`;
        const cas = () =>
          store.updateOne(
            { _id, version: { $lt: b.version } },
            { $set: { amount: b.amount, version: b.version } },
          );
        if (await cas()) return;
        const doc = { _id, tokenId, account: b.account, amount: b.amount, version: b.version };
        // It exists: either at a newer version (nothing to do) or inserted just now.
        if (!(await insertIfAbsent(store, { ...doc, flips: 0 }))) await cas();
      }),
    );
  }

  /**
   * Brings the view's stats up to date with these transfers and balances (and finishes
   * any change left pending by an earlier handler): steps 1–3 in the header. Reads and
   * writes by primary key, as many as the transfers and accounts, whatever the token's
   * history.
   */
  async settleStats(tokenId: string, transferIds: string[], accounts: string[]): Promise<void> {
    const { views, balances } = this.stores;
    for (let round = 0; round < MAX_STATS_ROUNDS; round++) {
      const view = await views.findOne({ _id: tokenId });
      if (!view) return;
      const pending = new Set(view.pending ?? []);

      // Read after the view: whatever another handler finished before that read is
      // visible in its source now; whatever it applies after it moves `rev`.
      const fresh: string[] = [];
      let transfers = 0;
      let holders = 0;
      const uncounted = [...new Set(transferIds)].filter(id => !pending.has(transferKey(id)));
      if (uncounted.length > 0) {
        const rows = await this.stores.transfers.find({ _id: { $in: uncounted } });
        const counted = new Set(rows.map(r => r._id));
        for (const id of uncounted) {
          if (counted.has(id)) continue;
          fresh.push(transferKey(id));
          transfers++;
        }
      }
      const checked = new Set(accounts);
      for (const key of pending) {
        const k = parseStatsKey(key);
        if (k?.kind === "holder") checked.add(k.account);
      }
      const found = await Promise.all(
        [...checked].map(account => balances.findOne({ _id: `${tokenId}/${account}` })),
      );
      [...checked].forEach((account, i) => {
        const b = found[i];
        const flip = b && holderFlip(b.amount, b.flips ?? 0);
        if (!flip || pending.has(holderKey(account, flip.flip))) return;
        fresh.push(holderKey(account, flip.flip));
        holders += flip.delta;
      });

      if (fresh.length > 0) {
        const applied = await views.updateOne(
          { _id: tokenId, rev: view.rev },
          {
            $set: {
              ...viewStats(
                view.holders + holders,
                view.transfers + transfers,
                this.settings.featuredMinHolders,
                view.promoted,
              ),
              rev: view.rev + 1,
            },
            $push: { pending: { $each: fresh } },
          },
        );
        if (!applied) continue; // another change came first: look again
      }

      const keys = [...pending, ...fresh];
      if (keys.length === 0) return;
      // Each key is its own document (a transfer row, one account's flips): side by side.
      await Promise.all(keys.map(key => this.commitStatsKey(tokenId, key)));
      await views.updateOne({ _id: tokenId }, { $pull: { pending: { $in: keys } } });
      // A balance may have changed again while its flip was on its way: look once more.
      if (!keys.some(k => parseStatsKey(k)?.kind === "holder")) return;
      transferIds = [];
    }
    throw new Error(`Stats of ${tokenId} are too contended; the event will be redelivered`);
  }

  /**
   * Forgets the rows of transfers counted before `before`: a transfer event is not
   * delivered again after the read model's retention (see pruneApplied). Returns how many.
   */
  pruneTransferRows(before: Date): Promise<number> {
    return pruneOlderThan(this.stores.transfers, "at", before.getTime());
  }

  /** Step 2 for one key: idempotent, so anyone may finish anyone's key. */
  async commitStatsKey(tokenId: string, key: string): Promise<void> {
    const k = parseStatsKey(key);
    if (k?.kind === "transfer") {
      await insertIfAbsent(this.stores.transfers, { _id: k.transferId, tokenId, at: Date.now() });
    } else if (k?.kind === "holder") {
      // Fails only when this flip is already recorded.
      await this.stores.balances.updateOne(
        { _id: `${tokenId}/${k.account}`, flips: k.flip - 1 },
        { $set: { flips: k.flip } },
      );
    } else {
      this.logger.warn({ tokenId, key }, "Unknown stats key dropped");
    }
  }

  /**
   * At start-up, before the channels are consumed: views written by the recounting
   * version (no `rev`) get exact counts and their balances their `flips` once; views
   * with changes left pending by a crash are finished.
   */
  async upgradeStats(): Promise<void> {
    const { views, balances, transfers } = this.stores;
    // Rows counted before they carried a time start their retention now.
    await transfers.update({ at: { $exists: false } }, { $set: { at: Date.now() } });
    const old = await views.find({ rev: { $exists: false } });
    if (old.length > 0) {
      await balances.update({ flips: { $exists: false }, amount: "0" }, { $set: { flips: 0 } });
      await balances.update({ flips: { $exists: false } }, { $set: { flips: 1 } });
      for (const v of old) {
        const [holders, count] = await Promise.all([
          balances.count({ tokenId: v._id, amount: { $ne: "0" } }),
          transfers.count({ tokenId: v._id }),
        ]);
        await views.updateOne(
          { _id: v._id, rev: { $exists: false } },
          {
            $set: {
              ...viewStats(holders, count, this.settings.featuredMinHolders),
              rev: 0,
              pending: [],
            },
            $unset: { statsSeq: true, statsAt: true },
          },
        );
      }
      this.logger.info({ views: old.length }, "Catalog stats upgraded to incremental");
    }
    for (const v of await views.find({ "pending.0": { $exists: true } }))
      await this.settleStats(v._id, [], []);
  }
}
