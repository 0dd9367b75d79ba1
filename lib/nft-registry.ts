import { businessError, conflict, forbidden, notFound, validationError } from "./errors";
import { domainEvent } from "./events";
import { newId } from "./ids";
import {
  NFT_EVENTS,
  type Collection,
  type Nft,
  type NftApproved,
  type NftMetadata,
  type NftMinted,
  type NftTransferred,
} from "./nft-events";
import { publishThenClear, type OutboxWriter } from "./outbox";
import { insertIfAbsent, type CollectionSpec, type Doc, type Store } from "./store";

/**
 * The NFT write model (ERC-721 semantics): collections, mints, approvals, transfers. No
 * broker in here: the nfts service hands it its stores and outbox, as tokens does.
 *
 * Mints take serials 1, 2, 3… per collection with no gap and no duplicate, never past
 * maxSupply, however many nodes mint at once: the serial is taken by a compare-and-set
 * on the collection's `version` that also records the mint as pending on the collection.
 * The NFT (its id derived from collection and serial) and its event are written after
 * that, and the pending record goes last; whatever a crash leaves pending is finished by
 * `recover()` or by a retry of the same key, each step idempotent.
 *
 * Every change of an NFT is a compare-and-set on its `version` (two transfers racing: one
 * wins, the other finds it no longer the caller's), records the change and the caller's
 * key in the same write, and writes its event before it is answered; a key seen again on
 * the NFT answers the NFT as it is, so a retried call does not refuse its own success.
 */

interface PendingMint {
  serial: number;
  key: string;
  to: string;
  metadata: NftMetadata;
  at: string;
}

export interface CollectionDoc extends Doc, Omit<Collection, "id"> {
  version: number;
  /** The create call's key: a retry answers the collection it made. */
  createKey: string;
  pending: PendingMint[];
}

type NftChange =
  { type: "transferred"; from: string; to: string } | { type: "approved"; approved: string | null };

export interface NftDoc extends Doc, Omit<Nft, "id"> {
  version: number;
  mintKey: string;
  /** The key of the last change, and that change while its event is not in the outbox. */
  lastKey?: string;
  /** The sale (a saga id) that holds the NFT: only its own moves go through. */
  lockedBy?: string;
  unpublished?: NftChange;
}

export interface NftStores {
  collections: Store<CollectionDoc>;
  nfts: Store<NftDoc>;
}

export const NFT_COLLECTIONS: Record<keyof NftStores, CollectionSpec> = {
  collections: { unique: ["createKey"], indexes: ["ownerId"] },
  nfts: { unique: ["mintKey"], indexes: ["ownerId", "collectionId"] },
};

export interface NewCollection {
  name: string;
  symbol: string;
  maxSupply?: number;
  royaltyBps?: number;
}

export interface NftFilter {
  owner?: string;
  collection?: string;
}

/** 409 while a sale holds the NFT: its owner can neither move it nor let another. */
function refuseWhileHeld(n: NftDoc): void {
  if (n.lockedBy !== undefined)
    throw conflict("The NFT is held by a sale in progress", [
      { field: "id", message: "held by a sale" },
    ]);
}

const nftId = (collectionId: string, serial: number): string =>
  `nft_${collectionId.replace(/^col_/, "")}_${serial}`;

export const toCollection = (c: CollectionDoc): Collection => ({
  id: c._id,
  name: c.name,
  symbol: c.symbol,
  ownerId: c.ownerId,
  maxSupply: c.maxSupply,
  royaltyBps: c.royaltyBps,
  minted: c.minted,
  createdAt: c.createdAt,
});

export const toNft = (n: NftDoc): Nft => ({
  id: n._id,
  collectionId: n.collectionId,
  serial: n.serial,
  ownerId: n.ownerId,
  approved: n.approved,
  metadata: n.metadata,
  mintedAt: n.mintedAt,
});

export class NftRegistry {
  constructor(
    private readonly stores: NftStores,
    private readonly outbox: OutboxWriter,
  ) {}

  async createCollection(ownerId: string, key: string, p: NewCollection): Promise<Collection> {
    const doc: CollectionDoc = {
      _id: newId("col"),
      name: p.name,
      symbol: p.symbol,
      ownerId,
      maxSupply: p.maxSupply ?? null,
      royaltyBps: p.royaltyBps ?? 0,
      minted: 0,
      createdAt: new Date().toISOString(),
      version: 1,
      createKey: key,
      pending: [],
    };
    if (await insertIfAbsent(this.stores.collections, doc)) return toCollection(doc);
    const first = await this.stores.collections.findOne({ createKey: key });
    if (!first) throw conflict("Idempotency key was already used for another request");
    return toCollection(first);
  }

  async collection(id: string): Promise<Collection> {
    const c = await this.stores.collections.findOne({ _id: id });
    if (!c) throw notFound("Collection");
    return toCollection(c);
  }

  /** Mints the next serial of the collection to `to`; only its owner may. */
  async mint(
    collectionId: string,
    callerId: string,
    key: string,
    to: string,
    metadata: NftMetadata,
  ): Promise<Nft> {
    const done = await this.stores.nfts.findOne({ mintKey: key });
    if (done) return toNft(done);
    for (;;) {
      const c = await this.stores.collections.findOne({ _id: collectionId });
      if (!c) throw notFound("Collection");
      if (c.ownerId !== callerId) throw forbidden("Only the collection's owner may mint");
      const mine = c.pending.find(p => p.key === key);
      if (mine) return this.finishMint(c, mine);
      if (c.maxSupply !== null && c.minted >= c.maxSupply)
        throw businessError("SUPPLY_EXCEEDED", "The collection has minted its maximum supply");
      const entry: PendingMint = {
        serial: c.minted + 1,
        key,
        to,
        metadata,
        at: new Date().toISOString(),
      };
      const taken = await this.stores.collections.updateOne(
        { _id: c._id, version: c.version },
        { $set: { minted: entry.serial, version: c.version + 1 }, $push: { pending: entry } },
      );
      if (taken) return this.finishMint(taken, entry);
      // Another mint took this serial meanwhile: read again (and re-check the supply).
    }
  }

  async approve(id: string, callerId: string, key: string, spender: string | null): Promise<Nft> {
    return this.change(id, key, n => {
      if (n.ownerId !== callerId) throw forbidden("Only the owner may approve");
      refuseWhileHeld(n);
      if (spender === n.ownerId)
        throw validationError("spender", "is the owner, who needs no approval");
      return { type: "approved", approved: spender };
    });
  }

  /** Moves the NFT; its owner or the approved account may. Clears the approval. */
  async transfer(id: string, callerId: string, key: string, to: string): Promise<Nft> {
    return this.change(id, key, n => {
      if (callerId !== n.ownerId && callerId !== n.approved)
        throw forbidden("Only the owner or the approved account may transfer");
      refuseWhileHeld(n);
      return { type: "transferred", from: n.ownerId, to };
    });
  }

  /**
   * For a sale (another service's saga): moves it only while `from` still owns it and, with
   * `lock`, only while that sale holds it (the hold stays until the sale ends).
   */
  async transferFrom(
    id: string,
    from: string,
    key: string,
    to: string,
    lock?: string,
  ): Promise<Nft> {
    return this.change(id, key, n => {
      if (n.ownerId !== from) throw conflict("The NFT no longer belongs to the seller");
      if (lock === undefined) refuseWhileHeld(n);
      else if (n.lockedBy !== lock) throw conflict("The NFT is not held by this sale");
      return { type: "transferred", from, to };
    });
  }

  /**
   * A sale holds the NFT while `owner` owns it: 409 when it has moved away or another sale
   * holds it. A repeat by the same sale answers the NFT again.
   */
  async lock(id: string, owner: string, lock: string): Promise<Nft> {
    for (;;) {
      const n = await this.requireDoc(id);
      if (n.lockedBy === lock) return toNft(n);
      if (n.lockedBy !== undefined) throw conflict("The NFT is held by another sale");
      if (n.ownerId !== owner) throw conflict("The NFT no longer belongs to the seller");
      const updated = await this.stores.nfts.updateOne(
        { _id: id, version: n.version },
        { $set: { lockedBy: lock, version: n.version + 1 } },
      );
      if (updated) return toNft(updated);
    }
  }

  /** Lets go of the sale's hold; harmless when this sale does not hold it. */
  async unlock(id: string, lock: string): Promise<Nft> {
    for (;;) {
      const n = await this.requireDoc(id);
      if (n.lockedBy !== lock) return toNft(n);
      const updated = await this.stores.nfts.updateOne(
        { _id: id, version: n.version },
        { $set: { version: n.version + 1 }, $unset: { lockedBy: true } },
      );
      if (updated) return toNft(updated);
    }
  }

  async get(id: string): Promise<Nft> {
    return toNft(await this.requireDoc(id));
  }

  private async requireDoc(id: string): Promise<NftDoc> {
    const n = await this.stores.nfts.findOne({ _id: id });
    if (!n) throw notFound("NFT");
    return n;
  }

  async list(f: NftFilter, limit: number, offset: number): Promise<{ rows: Nft[]; total: number }> {
    const query: Record<string, unknown> = {};
    if (f.owner !== undefined) query.ownerId = f.owner;
    if (f.collection !== undefined) query.collectionId = f.collection;
    const [rows, total] = await Promise.all([
      this.stores.nfts.find(query, { sort: { mintedAt: -1, _id: 1 }, limit, offset }),
      this.stores.nfts.count(query),
    ]);
    return { rows: rows.map(toNft), total };
  }

  async listCollections(
    owner: string | undefined,
    limit: number,
    offset: number,
  ): Promise<{ rows: Collection[]; total: number }> {
    const query = owner === undefined ? {} : { ownerId: owner };
    const [rows, total] = await Promise.all([
      this.stores.collections.find(query, { sort: { createdAt: -1, _id: 1 }, limit, offset }),
      this.stores.collections.count(query),
    ]);
    return { rows: rows.map(toCollection), total };
  }

  /** Finishes mints and changes a crash left half done. Returns how many. */
  async recover(): Promise<number> {
    let n = 0;
    for (const c of await this.stores.collections.find({ "pending.0": { $exists: true } }))
      for (const p of c.pending) {
        await this.finishMint(c, p);
        n++;
      }
    for (const doc of await this.stores.nfts.find({ unpublished: { $exists: true } })) {
      await this.publish(doc);
      n++;
    }
    return n;
  }

  private async finishMint(c: CollectionDoc, p: PendingMint): Promise<Nft> {
    const doc: NftDoc = {
      _id: nftId(c._id, p.serial),
      collectionId: c._id,
      serial: p.serial,
      ownerId: p.to,
      approved: null,
      metadata: p.metadata,
      mintedAt: p.at,
      version: 1,
      mintKey: p.key,
    };
    await insertIfAbsent(this.stores.nfts, doc);
    const nft = toNft(doc);
    const data: NftMinted = { nft };
    await this.outbox.write([domainEvent(NFT_EVENTS.minted, doc._id, data)]);
    await this.stores.collections.update({ _id: c._id }, { $pull: { pending: { key: p.key } } });
    return nft;
  }

  /** One change of an NFT: decided on what it is now, written by compare-and-set. */
  private async change(id: string, key: string, decide: (n: NftDoc) => NftChange): Promise<Nft> {
    for (;;) {
      const n = await this.stores.nfts.findOne({ _id: id });
      if (!n) throw notFound("NFT");
      if (n.lastKey === key) return toNft(n); // this call's own change, asked again
      const c = decide(n);
      const set =
        c.type === "transferred" ? { ownerId: c.to, approved: null } : { approved: c.approved };
      const updated = await this.stores.nfts.updateOne(
        { _id: id, version: n.version },
        { $set: { ...set, version: n.version + 1, lastKey: key, unpublished: c } },
      );
      if (!updated) continue; // changed meanwhile: decide again on what it is now
      await this.publish(updated);
      return toNft(updated);
    }
  }

  /** Writes the event of the NFT's last change, then clears its mark. */
  private async publish(n: NftDoc): Promise<void> {
    const c = n.unpublished;
    if (!c) return;
    const id = `${n._id}:${n.version}`;
    const event =
      c.type === "transferred"
        ? domainEvent(NFT_EVENTS.transferred, id, {
            nftId: n._id,
            collectionId: n.collectionId,
            from: c.from,
            to: c.to,
            version: n.version,
          } satisfies NftTransferred)
        : domainEvent(NFT_EVENTS.approved, id, {
            nftId: n._id,
            owner: n.ownerId,
            approved: c.approved,
            version: n.version,
          } satisfies NftApproved);
    await publishThenClear(this.outbox, this.stores.nfts, n, event);
  }
}
