import { businessError, conflict, forbidden, notFound, validationError } from "../shared/errors";
import { domainEvent, type DomainEvent } from "../events/domain";
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
import { commitWithEvents, type OutboxWriter } from "../messaging/outbox";
import type { Database, TxStores } from "../store/store";
import {
  NFT_COLLECTIONS,
  toCollection,
  toNft,
  type CollectionDoc,
  type NftChange,
  type NftDoc,
  type NftStores,
} from "./documents";

export { NFT_COLLECTIONS, toCollection, toNft };
export type { CollectionDoc, NftDoc, NftStores };

/**
 * The NFT write model (ERC-721 semantics): collections, mints, approvals, transfers. No
 * broker in here: the nfts service hands it its database and outbox, as tokens does.
 *
 * Every change is one transaction of the nfts database with its event in the outbox, so a
 * crash leaves nothing half done and nothing needs finishing after one. A mint takes the
 * collection's next serial (`minted` + 1), writes its NFT (whose id is derived from
 * collection and serial, a unique key) and raises `minted` in that transaction: serials
 * run 1, 2, 3… with no gap and no duplicate, never past maxSupply, however many mint at
 * once. A change of an NFT records the caller's key on it; a key seen again on the NFT
 * (or a mint's key on its NFT) answers the NFT as it is, so a retried call does not refuse
 * its own success.
 */

export interface NewCollection {
  name: string;
  symbol: string;
  maxSupply?: number;
  royaltyBps?: number;
}

export interface NftFilter {
  owner?: string;
  collection?: string;
  /** Newest first (the default), or by serial. */
  sort?: "recent" | "serial";
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

const txStores = (tx: TxStores): NftStores => ({
  collections: tx.store<CollectionDoc>("collections"),
  nfts: tx.store<NftDoc>("nfts"),
});

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
  private readonly stores: NftStores;

  constructor(
    private readonly db: Database,
    private readonly outbox: OutboxWriter,
  ) {
    this.stores = txStores(db);
  }

  createCollection(ownerId: string, key: string, p: NewCollection): Promise<Collection> {
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
    return this.change(async tx => {
      const first = await tx.collections.findOne({ createKey: key });
      if (first) return toCollection(first); // the same call again
      await tx.collections.insert(doc);
      return toCollection(doc);
    });
  }

  async collection(id: string): Promise<Collection> {
    const c = await this.stores.collections.findOne({ _id: id });
    if (!c) throw notFound("Collection");
    return toCollection(c);
  }

  /** Mints the next serial of the collection to `to`; only its owner may. */
  mint(
    collectionId: string,
    callerId: string,
    key: string,
    to: string,
    metadata: NftMetadata,
  ): Promise<Nft> {
    return this.change(async (tx, events) => {
      const done = await tx.nfts.findOne({ mintKey: key });
      if (done) return toNft(done);
      const c = await tx.collections.findOne({ _id: collectionId });
      if (!c) throw notFound("Collection");
      if (c.ownerId !== callerId) throw forbidden("Only the collection's owner may mint");
      const serial = c.minted + 1;
      if (c.maxSupply !== null && serial > c.maxSupply) throw supplyExceeded();
      const doc = newNft(c._id, serial, key, to, metadata, new Date().toISOString());
      await tx.nfts.insert(doc);
      await tx.collections.update({ _id: c._id }, { $set: { minted: serial } });
      const nft = toNft(doc);
      const data: NftMinted = { nft };
      events.push(domainEvent(NFT_EVENTS.minted, doc._id, data));
      return nft;
    });
  }

  async approve(id: string, callerId: string, key: string, spender: string | null): Promise<Nft> {
    return this.changeNft(id, key, n => {
      if (n.ownerId !== callerId) throw forbidden("Only the owner may approve");
      refuseWhileHeld(n);
      if (spender === n.ownerId)
        throw validationError("spender", "is the owner, who needs no approval");
      return { type: "approved", approved: spender };
    });
  }

  /** Moves the NFT; its owner or the approved account may. Clears the approval. */
  async transfer(id: string, callerId: string, key: string, to: string): Promise<Nft> {
    return this.changeNft(id, key, n => {
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
    return this.changeNft(id, key, n => {
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
  lock(id: string, owner: string, lock: string): Promise<Nft> {
    return this.change(async tx => {
      const n = await requireIn(tx, id);
      if (n.lockedBy === lock) return toNft(n);
      if (n.lockedBy !== undefined) throw conflict("The NFT is held by another sale");
      if (n.ownerId !== owner) throw conflict("The NFT no longer belongs to the seller");
      return toNft(await updateIn(tx, n, { $set: { lockedBy: lock, version: n.version + 1 } }));
    });
  }

  /** Lets go of the sale's hold; harmless when this sale does not hold it. */
  unlock(id: string, lock: string): Promise<Nft> {
    return this.change(async tx => {
      const n = await requireIn(tx, id);
      if (n.lockedBy !== lock) return toNft(n);
      const next = { $set: { version: n.version + 1 }, $unset: { lockedBy: true } };
      return toNft(await updateIn(tx, n, next));
    });
  }

  async get(id: string): Promise<Nft> {
    return toNft(await requireIn(this.stores, id));
  }

  async list(f: NftFilter, limit: number, offset: number): Promise<{ rows: Nft[]; total: number }> {
    const query: Record<string, unknown> = {};
    if (f.owner !== undefined) query.ownerId = f.owner;
    if (f.collection !== undefined) query.collectionId = f.collection;
    const sort: Record<string, 1 | -1> =
      f.sort === "serial" ? { serial: 1, _id: 1 } : { mintedAt: -1, _id: 1 };
    const [rows, total] = await Promise.all([
      this.stores.nfts.find(query, { sort, limit, offset }),
      this.stores.nfts.count(query),
    ]);
    return { rows: rows.map(toNft), total };
  }

  /** The NFTs of `ids` that exist, in the order of `ids`. */
  async byIds(ids: string[]): Promise<Nft[]> {
    if (ids.length === 0) return [];
    const docs = await this.stores.nfts.find({ _id: { $in: ids } });
    const byId = new Map(docs.map(d => [d._id, d]));
    return ids.flatMap(id => {
      const d = byId.get(id);
      return d ? [toNft(d)] : [];
    });
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

  /** One change of an NFT, decided on what it is inside its transaction, with its event. */
  private changeNft(id: string, key: string, decide: (n: NftDoc) => NftChange): Promise<Nft> {
    return this.change(async (tx, events) => {
      const n = await requireIn(tx, id);
      if (n.lastKey === key) return toNft(n); // this call's own change, asked again
      const c = decide(n);
      const set =
        c.type === "transferred" ? { ownerId: c.to, approved: null } : { approved: c.approved };
      const updated = await updateIn(tx, n, {
        $set: { ...set, version: n.version + 1, lastKey: key },
      });
      events.push(changeEvent(updated, c));
      return toNft(updated);
    });
  }

  /** `fn`'s writes and the events it pushes commit together, then are sent. */
  private change<R>(fn: (tx: NftStores, events: DomainEvent[]) => Promise<R>): Promise<R> {
    return commitWithEvents(this.db, this.outbox, (tx, events) => fn(txStores(tx), events));
  }
}

async function requireIn(stores: NftStores, id: string): Promise<NftDoc> {
  const n = await stores.nfts.findOne({ _id: id });
  if (!n) throw notFound("NFT");
  return n;
}

/** Updates `n` at the version it was read at, inside the transaction that read it. */
async function updateIn(
  tx: NftStores,
  n: NftDoc,
  update: Record<string, unknown>,
): Promise<NftDoc> {
  const updated = await tx.nfts.updateOne({ _id: n._id, version: n.version }, update);
  if (!updated) throw new Error(`NFT ${n._id} changed inside its transaction`);
  return updated;
}

/** The event of an NFT's change `c`, now at `n`'s version. */
function changeEvent(n: NftDoc, c: NftChange): DomainEvent {
  const id = `${n._id}:${n.version}`;
  return c.type === "transferred"
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
}
