import { amountSortKey, checkedAdd, formatAmount } from "../shared/amount";
import { BoundedMap } from "../shared/bounded-map";
import {
  KeyedMutex,
  TakenOverError,
  balanceId,
  type BalanceDoc,
  type JournalDoc,
  type OpMarker,
} from "./ledger";
import { insertIfAbsent, type Store } from "../store/store";

/**
 * The balances of the tokens write model (docs/architecture.md rule 4): every change a compare-and-set
 * on the balance's version that also writes a marker of its journal entry, which is how
 * recovery tells which steps of a transfer happened (lib/tokens/transfer-engine.ts). Markers of
 * settled entries are removed in the next write of their balance.
 */

/** In-process memories are caches: bounded, and losing an entry only costs a read. */
const CACHE_LIMIT = 100_000;

export class BalanceBook {
  private readonly locks = new KeyedMutex();
  /** Balances last seen by this engine; a stale one only costs a CAS miss. */
  private readonly cache = new BoundedMap<string, BalanceDoc>(CACHE_LIMIT);
  /** Journal ids whose `done` is written: their markers may go. */
  private readonly settled = new BoundedMap<string, true>(CACHE_LIMIT);

  constructor(
    private readonly balances: Store<BalanceDoc>,
    private readonly journal: Store<JournalDoc>,
    /** Whether a journal entry is being applied or completed here: its markers stay. */
    private readonly isLive: (journalId: string) => boolean,
  ) {}

  /** A balance as stored now ("0" when the account never held the token). */
  async amount(tokenId: string, account: string): Promise<string> {
    return (await this.read(balanceId(tokenId, account), true))?.amount ?? "0";
  }

  /** The entry's `done` is written: its markers may go with the next write of each balance. */
  markSettled(journalId: string): void {
    this.settled.set(journalId, true);
  }

  /** The token is gone: its cached balances must not answer for it. */
  forgetToken(tokenId: string): void {
    for (const key of this.cache.keys()) if (key.startsWith(`${tokenId}:`)) this.cache.delete(key);
  }

  async read(id: string, fresh: boolean): Promise<BalanceDoc | null> {
    if (!fresh) {
      const hit = this.cache.get(id);
      if (hit) return hit;
    }
    const doc = await this.balances.findOne({ _id: id });
    if (doc) this.cache.set(id, doc);
    else this.cache.delete(id);
    return doc;
  }

  /**
   * Adds `delta` (negative: debit) to a balance by compare-and-set on its version,
   * writing the journal marker in the same write. Null when the balance is below `need`
   * (what a debit takes) or the sum would pass 2^256-1. A step already marked is not
   * applied again.
   */
  async change(
    tokenId: string,
    account: string,
    delta: bigint,
    journalId: string,
    marker: OpMarker,
    need = delta < 0n ? -delta : 0n,
  ): Promise<BalanceDoc | null> {
    const id = balanceId(tokenId, account);
    const store = this.balances;
    return this.locks.run(id, async () => {
      let fresh = false;
      for (;;) {
        const cur = await this.read(id, fresh);
        const done = cur?.ops?.[journalId];
        if (done === marker) return cur;
        if (done === "x") throw new TakenOverError();
        const have = BigInt(cur?.amount ?? "0");
        const next = have < need ? null : checkedAdd(have - need, delta + need);
        if (next === null) {
          if (!fresh) {
            fresh = true; // a cached balance may be behind another process's credit
            continue;
          }
          return null;
        }
        const amount = formatAmount(next);
        if (!cur) {
          const doc: BalanceDoc = {
            _id: id,
            tokenId,
            account,
            amount,
            sortKey: amountSortKey(amount),
            version: 1,
            ops: { [journalId]: marker },
          };
          if (await insertIfAbsent(store, doc)) {
            this.cache.set(id, doc);
            return doc;
          }
          fresh = true; // created meanwhile: read it and retry
          continue;
        }
        const unset = await this.cleanup(cur.ops);
        const update: Record<string, unknown> = {
          $set: {
            amount,
            sortKey: amountSortKey(amount),
            version: cur.version + 1,
            [`ops.${journalId}`]: marker,
          },
        };
        if (Object.keys(unset).length > 0) update.$unset = unset;
        const doc = await store.updateOne({ _id: id, version: cur.version }, update);
        if (doc) {
          this.cache.set(id, doc);
          return doc;
        }
        fresh = true; // CAS miss: someone else wrote it; read again and retry
      }
    });
  }

  /**
   * Recovery's fence against a stalled owner: marks `x` on the balance unless a step of
   * the entry is marked there already, which it returns (the owner got that far). Both go
   * through the balance's compare-and-set, so exactly one of the owner's step and the
   * fence happens first, and the other sees it.
   */
  async fence(tokenId: string, account: string, journalId: string): Promise<OpMarker> {
    const id = balanceId(tokenId, account);
    return this.locks.run(id, async () => {
      for (;;) {
        const cur = await this.read(id, true);
        const done = cur?.ops?.[journalId];
        if (done) return done;
        if (!cur) {
          const doc: BalanceDoc = {
            _id: id,
            tokenId,
            account,
            amount: "0",
            sortKey: amountSortKey("0"),
            version: 1,
            ops: { [journalId]: "x" },
          };
          if (await insertIfAbsent(this.balances, doc)) return "x";
          continue;
        }
        const fenced = await this.balances.updateOne(
          { _id: id, version: cur.version },
          { $set: { version: cur.version + 1, [`ops.${journalId}`]: "x" } },
        );
        if (fenced) {
          this.cache.set(id, fenced);
          return "x";
        }
      }
    });
  }

  /** Markers of settled journals, to unset in the next write of their balance. */
  async cleanup(ops: Record<string, OpMarker>): Promise<Record<string, true>> {
    const unset: Record<string, true> = {};
    const unknown: string[] = [];
    for (const jid of Object.keys(ops ?? {})) {
      if (this.settled.has(jid)) unset[`ops.${jid}`] = true;
      else unknown.push(jid);
    }
    // Markers left by a previous run (or another replica): ask the journal. A
    // pending entry's markers stay: recovery needs them.
    const foreign = unknown.filter(jid => !this.isLive(jid));
    if (foreign.length > 0) {
      const docs = await this.journal.find({ _id: { $in: foreign } });
      const pending = new Set(docs.filter(j => j.state === "pending").map(j => j._id));
      // Absent: pruned after its retention, so long settled.
      for (const jid of foreign) {
        if (pending.has(jid)) continue;
        this.settled.set(jid, true);
        unset[`ops.${jid}`] = true;
      }
    }
    return unset;
  }
}
