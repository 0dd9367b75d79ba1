import { businessError, conflict, forbidden, notFound, validationError } from "../shared/errors";
import { domainEvent } from "../events/domain";
import { newId } from "../shared/ids";
import {
  NFT_EVENTS,
  type Collection,
  type Nft,
  type NftApproved,
  type NftMetadata,
  type NftMinted,
  type NftTransferred,
} from "../events/nfts";
import { publishThenClear, type OutboxWriter } from "../messaging/outbox";
import { insertIfAbsent } from "../store/store";
import {
  NFT_COLLECTIONS,
  toCollection,
  toNft,
  type CollectionDoc,
  type MintMarkDoc,
  type NftChange,
  type NftDoc,
  type NftStores,
} from "./documents";

export { NFT_COLLECTIONS, toCollection, toNft };
export type { CollectionDoc, MintMarkDoc, NftDoc, NftStores };

/**
 * The NFT write model (ERC-721 semantics): collections, mints, approvals, transfers. No
 * broker in here: the nfts service hands it its stores and outbox, as tokens does.
 *
 * Mints take serials 1, 2, 3… per collection with no gap and no duplicate, never past
 * maxSupply, however many nodes mint at once: the serial is taken by inserting the NFT
 * itself, whose id is derived from collection and serial (a unique key), so the one write
 * that carries the metadata is also the claim; a mint that finds its serial taken tries
 * the next one (a failed insert writes nothing). The collection only keeps a `minted`
 * counter, and a small mark in `mints` (no metadata) says a mint is under way until its
 * event is written: what a mint writes is its NFT, its event and a few hundred bytes,
 * however many mint at once. Whatever a crash leaves marked is finished by `recover()`.
 *
 * Every change of an NFT is a compare-and-set on its `version` (two transfers racing: one
 * wins, the other finds it no longer the caller's), records the change and the caller's
 * key in the same write, and writes its event before it is answered; a key seen again on
 * the NFT answers the NFT as it is, so a retried call does not refuse its own success.
 */

/** A mark older than this whose NFT was never written is a mint that died before its claim. */
const ABANDONED_MARK_MS = 60_000;

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

const supplyExceeded = () =>
  businessError("SUPPLY_EXCEEDED", "The collection has minted its maximum supply");

const newNft = (
  collectionId: string,
  serial: number,
  mintKey: string,
  ownerId: string,
  metadata: NftMetadata,
  mintedAt: string,
): NftDoc => ({
  _id: nftId(collectionId, serial),
  collectionId,
  serial,
  ownerId,
  approved: null,
  metadata,
  mintedAt,
  version: 1,
  mintKey,
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
    const c = await this.stores.collections.findOne({ _id: collectionId });
    if (!c) throw notFound("Collection");
    if (c.ownerId !== callerId) throw forbidden("Only the collection's owner may mint");
    const full = (serial: number) => c.maxSupply !== null && serial > c.maxSupply;
    // `minted` never runs ahead of the NFTs written, so no serial below it is free.
    let serial = c.minted + 1;
    if (full(serial)) throw supplyExceeded();
    const mark: MintMarkDoc = { _id: newId("mnt"), key, collectionId, at: Date.now() };
    // A retry of a call that died finds its old mark: fresh again, so no sweep drops it now.
    if (!(await insertIfAbsent(this.stores.mints, mark)))
      await this.stores.mints.update({ key }, { $set: { at: mark.at } });
    const mintedAt = new Date().toISOString();
    for (;;) {
      if (full(serial)) {
        await this.stores.mints.remove({ key });
        throw supplyExceeded();
      }
      const doc = newNft(c._id, serial, key, to, metadata, mintedAt);
      if (await insertIfAbsent(this.stores.nfts, doc)) return this.finishMint(doc);
      // Either this key minted meanwhile (a racing retry), or the serial is another's.
      const mine = await this.stores.nfts.findOne({ mintKey: key });
      if (mine) return toNft(mine);
      serial++;
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

  /**
   * Finishes mints and changes a crash left half done. Returns how many. A mark younger
   * than `inFlightMs` is left to its own call (the periodic sweep passes its interval).
   */
  async recover(inFlightMs = 0): Promise<number> {
    let n = 0;
    const now = Date.now();
    for (const mark of await this.stores.mints.find({ at: { $lte: now - inFlightMs } })) {
      const nft = await this.stores.nfts.findOne({ mintKey: mark.key });
      if (nft) {
        await this.finishMint(nft);
        n++;
      } else if (now - mark.at > ABANDONED_MARK_MS) {
        // It never took a serial: nothing to finish; a retry of its key mints anew.
        await this.stores.mints.remove({ _id: mark._id });
      }
    }
    for (const c of await this.stores.collections.find({ "pending.0": { $exists: true } }))
      for (const p of c.pending ?? []) {
        const doc = newNft(c._id, p.serial, p.key, p.to, p.metadata, p.at);
        await insertIfAbsent(this.stores.nfts, doc);
        await this.finishMint(doc);
        await this.stores.collections.update(
          { _id: c._id },
          { $pull: { pending: { key: p.key } } },
        );
        n++;
      }
    for (const doc of await this.stores.nfts.find({ unpublished: { $exists: true } })) {
      await this.publish(doc);
      n++;
    }
    return n;
  }

  /** After the NFT is written: its event, the collection's counter, then the mark goes. */
  private async finishMint(doc: NftDoc): Promise<Nft> {
    const nft = toNft(doc);
    const data: NftMinted = { nft };
    await this.outbox.write([domainEvent(NFT_EVENTS.minted, doc._id, data)]);
    await this.stores.collections.update(
      { _id: doc.collectionId, minted: { $lt: doc.serial } },
      { $set: { minted: doc.serial } },
    );
    await this.stores.mints.remove({ key: doc.mintKey });
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
