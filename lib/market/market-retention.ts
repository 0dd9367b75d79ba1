import { pruneOlderThan, type Database, type Doc } from "../store/store";

/**
 * The market's retention (docs/durability.md "Growth"): ended listings (sold, cancelled,
 * expired), ended offers (accepted, cancelled, expired) and ended auctions (settled,
 * unsold, cancelled) with their bids are removed some time after they ended. The account
 * history is the activity service's, kept forever; these documents only need to outlive
 * what reads them (the lists, a late retry of a step). A live one has no `endedAt` and is
 * never removed; an NFT whose listing or auction went is free to be listed again (its
 * `liveNftId` went when it ended).
 *
 * Documents ended before `endedAt` existed are given their `updatedAt` as their end (an
 * ended document is never written again), once per process, at its first prune.
 */

/** The states a document of each collection ends in. */
const ENDED: Record<"listings" | "offers" | "auctions", string[]> = {
  listings: ["sold", "cancelled", "expired"],
  offers: ["accepted", "cancelled", "expired"],
  auctions: ["settled", "unsold", "cancelled"],
};

export interface MarketPruned {
  listings: number;
  offers: number;
  auctions: number;
  bids: number;
}

type Ended = Doc & { endedAt?: string; updatedAt: string };

const yieldLoop = () => new Promise(resolve => setImmediate(resolve));

export class MarketRetention {
  private dated = false;

  constructor(
    private readonly db: Database,
    /** Documents per window: the event loop is free between two. */
    private readonly batch = 2000,
  ) {}

  /** Removes what ended before `before`, oldest first, in windows through `endedAt`'s index. */
  async prune(before: Date): Promise<MarketPruned> {
    if (!this.dated) {
      for (const name of Object.keys(ENDED) as Array<keyof typeof ENDED>)
        await this.dateLegacy(name);
      this.dated = true;
    }
    const opts = { iso: true, batch: this.batch };
    const cutoff = before.getTime();
    const listings = await pruneOlderThan(this.db.store("listings"), "endedAt", cutoff, opts);
    const offers = await pruneOlderThan(this.db.store("offers"), "endedAt", cutoff, opts);
    return { listings, offers, ...(await this.pruneAuctions(before)) };
  }

  /** Auctions and their bids: the bids first, so a crash between leaves no bid behind. */
  private async pruneAuctions(before: Date): Promise<{ auctions: number; bids: number }> {
    const auctions = this.db.store<Ended>("auctions");
    const bids = this.db.store("bids");
    const out = { auctions: 0, bids: 0 };
    for (;;) {
      const window = await auctions.find(
        { endedAt: { $lt: before.toISOString() } },
        { sort: { endedAt: 1 }, limit: this.batch },
      );
      if (window.length === 0) return out;
      const ids = window.map(a => a._id);
      out.bids += await bids.remove({ auctionId: { $in: ids } });
      out.auctions += await auctions.remove({ _id: { $in: ids } });
      if (window.length < this.batch) return out;
      await yieldLoop();
    }
  }

  /** Gives ended documents written before `endedAt` existed their last write as their end. */
  private async dateLegacy(name: keyof typeof ENDED): Promise<void> {
    const undated = { state: { $in: ENDED[name] }, endedAt: { $exists: false } };
    for (;;) {
      const window = await this.db
        .store<Ended>(name)
        .find(undated, { sort: { _id: 1 }, limit: this.batch });
      if (window.length === 0) return;
      await this.db.transaction(async tx => {
        const docs = tx.store<Ended>(name);
        for (const d of window)
          await docs.updateOne({ _id: d._id, ...undated }, { $set: { endedAt: d.updatedAt } });
      });
      if (window.length < this.batch) return;
      await yieldLoop();
    }
  }
}
