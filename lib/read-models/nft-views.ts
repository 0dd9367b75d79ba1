import { MARKET_EVENTS, type ListingEvent } from "../events/market";
import { NFT_EVENTS, type NftMinted, type NftTransferred } from "../events/nfts";
import type { DomainEvent } from "../events/domain";
import type { CollectionSpec, Doc, Store, TxStores } from "../store/store";
import { pruneOlderThan } from "../store/store";

/**
 * The catalog's view of NFTs and their collections, from the nfts and market events:
 * what GET /api/collections/:id/stats and /traits answer, and the NFTs found by trait or
 * ordered by price for GET /api/nfts (docs/api.md). Exact under redelivery (the
 * read-model mixin applies each event once) and under reordering across channels:
 *  - an NFT's owner follows the highest `version` seen; a transfer that arrives before the
 *    mint makes a stub the mint fills in, and each NFT counts once in its owner's holding;
 *  - a listing's end (cancelled, sold, expired) is final: a `listed` that arrives after it
 *    changes nothing;
 *  - sales are kept 31 days for the 1d/7d/30d windows; all-time totals are counters.
 */

export const NFT_VIEW_EVENTS = [
  NFT_EVENTS.minted,
  NFT_EVENTS.transferred,
  MARKET_EVENTS.listed,
  MARKET_EVENTS.cancelled,
  MARKET_EVENTS.sold,
  MARKET_EVENTS.expired,
] as const;

export interface NftViewDoc extends Doc {
  _id: string;
  collectionId: string;
  /** 0 until the mint event is seen. */
  serial: number;
  ownerId: string;
  version: number;
  minted: boolean;
  mintedAt?: string;
  /** trait_type (encoded: see traitKey) → value as a string. */
  traits: Record<string, string>;
  /** The active listing, if any; `priceKey` sorts by price, unlisted last. */
  listingId?: string;
  priceTokenId?: string;
  price?: string;
  priceKey: string;
}

export interface ListingViewDoc extends Doc {
  _id: string;
  nftId: string;
  collectionId: string;
  priceTokenId: string;
  price: string;
  state: string;
  expiresAt: string | null;
}

export interface SaleDoc extends Doc {
  _id: string;
  collectionId: string;
  priceTokenId: string;
  price: string;
  /** ms since epoch. */
  at: number;
}

export interface CollectionViewDoc extends Doc {
  _id: string;
  supply: number;
  traits: Record<string, Record<string, number>>;
  salesAll: number;
  volumeAll: Record<string, string>;
}

export interface HoldingDoc extends Doc {
  _id: string;
  collectionId: string;
  n: number;
}

export const NFT_VIEW_COLLECTIONS = {
  nftViews: { indexes: ["collectionId", "ownerId", "priceKey", "serial", "mintedAt"] },
  listingViews: { indexes: ["collectionId", "nftId"] },
  sales: { indexes: ["collectionId", "at"] },
  collectionViews: {},
  holdings: { indexes: ["collectionId"] },
} satisfies Record<string, CollectionSpec>;

export interface NftViewStores {
  nfts: Store<NftViewDoc>;
  listings: Store<ListingViewDoc>;
  sales: Store<SaleDoc>;
  collections: Store<CollectionViewDoc>;
  holdings: Store<HoldingDoc>;
}

export const nftViewStores = (tx: TxStores): NftViewStores => ({
  nfts: tx.store<NftViewDoc>("nftViews"),
  listings: tx.store<ListingViewDoc>("listingViews"),
  sales: tx.store<SaleDoc>("sales"),
  collections: tx.store<CollectionViewDoc>("collectionViews"),
  holdings: tx.store<HoldingDoc>("holdings"),
});

/** A trait_type as a field name: no dot or `$` (they would read as a path or an operator). */
export const traitKey = (type: string): string =>
  type.replace(/%/g, "%25").replace(/\./g, "%2E").replace(/\$/g, "%24");

/** Sorts prices as numbers: 78 digits hold 2^256 − 1. Unlisted ("~") sorts after any. */
const UNLISTED = "~";
const priceKey = (price: string): string => price.padStart(78, "0");

const DAY = 24 * 3600_000;
export const WINDOWS = { "1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY } as const;
const SALES_RETENTION_MS = 31 * DAY;

export interface CollectionStats {
  collectionId: string;
  supply: number;
  owners: number;
  listed: number;
  floor: Record<string, string>;
  volume: Record<keyof typeof WINDOWS | "all", Record<string, string>>;
  sales: Record<keyof typeof WINDOWS | "all", number>;
}

export type NftSort = "serial" | "recent" | "price";

export interface NftQuery {
  collection?: string;
  owner?: string;
  traits?: Record<string, string>;
  sort: NftSort;
  limit: number;
  offset: number;
}

const SORTS: Record<NftSort, Record<string, 1 | -1>> = {
  serial: { serial: 1, _id: 1 },
  recent: { mintedAt: -1, _id: 1 },
  price: { priceKey: 1, _id: 1 },
};

const add = (a: string | undefined, b: string): string => (BigInt(a ?? "0") + BigInt(b)).toString();

export class NftViews {
  constructor(private readonly s: NftViewStores) {}

  /** Applies events not applied before, in order, inside the batch's transaction. */
  async apply(events: DomainEvent[]): Promise<void> {
    for (const e of events) {
      switch (e.type) {
        case NFT_EVENTS.minted:
          await this.minted((e.data as NftMinted).nft);
          break;
        case NFT_EVENTS.transferred:
          await this.transferred(e.data as NftTransferred);
          break;
        case MARKET_EVENTS.listed:
          await this.listed((e.data as ListingEvent).listing);
          break;
        case MARKET_EVENTS.sold:
          await this.ended((e.data as ListingEvent).listing);
          await this.sold(e as DomainEvent<ListingEvent>);
          break;
        case MARKET_EVENTS.cancelled:
        case MARKET_EVENTS.expired:
          await this.ended((e.data as ListingEvent).listing);
          break;
      }
    }
  }

  async stats(collectionId: string, now = Date.now()): Promise<CollectionStats> {
    const [view, owners, active, sales] = await Promise.all([
      this.s.collections.findOne({ _id: collectionId }),
      this.s.holdings.count({ collectionId }),
      this.s.listings.find({ collectionId, state: "active" }),
      this.s.sales.find({ collectionId, at: { $gte: now - WINDOWS["30d"] } }),
    ]);
    const floor: Record<string, string> = {};
    let listed = 0;
    for (const l of active) {
      if (l.expiresAt !== null && Date.parse(l.expiresAt) <= now) continue; // lapsed
      listed++;
      const cur = floor[l.priceTokenId];
      if (cur === undefined || BigInt(l.price) < BigInt(cur)) floor[l.priceTokenId] = l.price;
    }
    const volume: CollectionStats["volume"] = { "1d": {}, "7d": {}, "30d": {}, all: {} };
    const counts: CollectionStats["sales"] = { "1d": 0, "7d": 0, "30d": 0, all: 0 };
    for (const sale of sales)
      for (const [w, ms] of Object.entries(WINDOWS) as Array<[keyof typeof WINDOWS, number]>) {
        if (sale.at < now - ms) continue;
        volume[w][sale.priceTokenId] = add(volume[w][sale.priceTokenId], sale.price);
        counts[w]++;
      }
    volume.all = view?.volumeAll ?? {};
    counts.all = view?.salesAll ?? 0;
    return {
      collectionId,
      supply: view?.supply ?? 0,
      owners,
      listed,
      floor,
      volume,
      sales: counts,
    };
  }

  /** Whether any event of the collection was applied. */
  async knows(collectionId: string): Promise<boolean> {
    return (await this.s.collections.count({ _id: collectionId })) > 0;
  }

  async traits(collectionId: string): Promise<Record<string, Record<string, number>>> {
    return (await this.s.collections.findOne({ _id: collectionId }))?.traits ?? {};
  }

  /** The ids of the NFTs that match, in order, and how many match in all. */
  async find(q: NftQuery): Promise<{ ids: string[]; total: number }> {
    const query: Record<string, unknown> = { minted: true };
    if (q.collection !== undefined) query.collectionId = q.collection;
    if (q.owner !== undefined) query.ownerId = q.owner;
    for (const [type, value] of Object.entries(q.traits ?? {}))
      query[`traits.${traitKey(type)}`] = value;
    const [rows, total] = await Promise.all([
      this.s.nfts.find(query, { sort: SORTS[q.sort], limit: q.limit, offset: q.offset }),
      this.s.nfts.count(query),
    ]);
    return { ids: rows.map(r => r._id), total };
  }

  /** Forgets sales older than the longest window. */
  pruneSales(now = Date.now()): Promise<number> {
    return pruneOlderThan(this.s.sales, "at", now - SALES_RETENTION_MS);
  }

  private async minted(nft: NftMinted["nft"]): Promise<void> {
    const cur = await this.s.nfts.findOne({ _id: nft.id });
    if (cur?.minted) return;
    const traits: Record<string, string> = {};
    for (const a of nft.metadata.attributes ?? []) traits[traitKey(a.trait_type)] = String(a.value);
    const fields = { serial: nft.serial, minted: true, mintedAt: nft.mintedAt, traits };
    if (cur) {
      // A transfer came first: its owner and version stand.
      await this.s.nfts.update({ _id: nft.id }, { $set: fields });
    } else {
      const listing = await this.s.listings.findOne({ nftId: nft.id, state: "active" });
      await this.s.nfts.insert({
        _id: nft.id,
        collectionId: nft.collectionId,
        ownerId: nft.ownerId,
        version: 1,
        ...fields,
        ...listedFields(listing),
      });
      await this.hold(nft.collectionId, nft.ownerId, 1);
    }
    const view = await this.collection(nft.collectionId);
    const counts = { ...view.traits };
    for (const a of nft.metadata.attributes ?? []) {
      const values = { ...(counts[a.trait_type] ?? {}) };
      values[String(a.value)] = (values[String(a.value)] ?? 0) + 1;
      counts[a.trait_type] = values;
    }
    await this.s.collections.update(
      { _id: nft.collectionId },
      { $set: { supply: view.supply + 1, traits: counts } },
    );
  }

  private async transferred(t: NftTransferred): Promise<void> {
    const cur = await this.s.nfts.findOne({ _id: t.nftId });
    if (!cur) {
      await this.s.nfts.insert({
        _id: t.nftId,
        collectionId: t.collectionId,
        serial: 0,
        ownerId: t.to,
        version: t.version,
        minted: false,
        traits: {},
        priceKey: UNLISTED,
      });
      await this.hold(t.collectionId, t.to, 1);
      return;
    }
    if (t.version <= cur.version) return; // an older move, arrived late
    await this.s.nfts.update({ _id: t.nftId }, { $set: { ownerId: t.to, version: t.version } });
    if (cur.ownerId === t.to) return;
    await this.hold(t.collectionId, cur.ownerId, -1);
    await this.hold(t.collectionId, t.to, 1);
  }

  private async listed(l: ListingEvent["listing"]): Promise<void> {
    if (await this.s.listings.findOne({ _id: l.id })) return; // seen, or ended already
    const doc: ListingViewDoc = {
      _id: l.id,
      nftId: l.nftId,
      collectionId: l.collectionId,
      priceTokenId: l.priceTokenId,
      price: l.price,
      state: "active",
      expiresAt: l.expiresAt ?? null,
    };
    await this.s.listings.insert(doc);
    await this.s.nfts.update({ _id: l.nftId }, { $set: listedFields(doc) });
  }

  private async ended(l: ListingEvent["listing"]): Promise<void> {
    const cur = await this.s.listings.findOne({ _id: l.id });
    if (cur) await this.s.listings.update({ _id: l.id }, { $set: { state: l.state } });
    else
      await this.s.listings.insert({
        _id: l.id,
        nftId: l.nftId,
        collectionId: l.collectionId,
        priceTokenId: l.priceTokenId,
        price: l.price,
        state: l.state,
        expiresAt: l.expiresAt ?? null,
      });
    await this.s.nfts.update(
      { _id: l.nftId, listingId: l.id },
      {
        $set: { priceKey: UNLISTED },
        $unset: { listingId: true, priceTokenId: true, price: true },
      },
    );
  }

  private async sold(e: DomainEvent<ListingEvent>): Promise<void> {
    const l = e.data.listing;
    await this.s.sales.insert({
      _id: e.eventId,
      collectionId: l.collectionId,
      priceTokenId: l.priceTokenId,
      price: l.price,
      at: Date.parse(e.occurredAt),
    });
    const view = await this.collection(l.collectionId);
    await this.s.collections.update(
      { _id: l.collectionId },
      {
        $set: {
          salesAll: view.salesAll + 1,
          volumeAll: {
            ...view.volumeAll,
            [l.priceTokenId]: add(view.volumeAll[l.priceTokenId], l.price),
          },
        },
      },
    );
  }

  private async collection(id: string): Promise<CollectionViewDoc> {
    const cur = await this.s.collections.findOne({ _id: id });
    if (cur) return cur;
    const doc: CollectionViewDoc = { _id: id, supply: 0, traits: {}, salesAll: 0, volumeAll: {} };
    await this.s.collections.insert(doc);
    return doc;
  }

  /** One more (or fewer) NFT of the collection held by `owner`; none held: no document. */
  private async hold(collectionId: string, owner: string, by: 1 | -1): Promise<void> {
    const _id = `${collectionId}:${owner}`;
    const cur = await this.s.holdings.findOne({ _id });
    const n = (cur?.n ?? 0) + by;
    if (n <= 0) await this.s.holdings.remove({ _id });
    else if (cur) await this.s.holdings.update({ _id }, { $set: { n } });
    else await this.s.holdings.insert({ _id, collectionId, n });
  }
}

function listedFields(
  l: ListingViewDoc | null,
): Pick<NftViewDoc, "priceKey" | "listingId" | "priceTokenId" | "price"> {
  if (!l) return { priceKey: UNLISTED };
  return {
    listingId: l._id,
    priceTokenId: l.priceTokenId,
    price: l.price,
    priceKey: priceKey(l.price),
  };
}
