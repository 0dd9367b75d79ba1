import { businessError, conflict, notFound, type ClientError } from "./errors";
import { amountSortKey, checkedAdd, checkedSub, formatAmount } from "./amount";
import { TOKEN_EVENTS, domainEvent, type BalanceAfter, type TokenTransferred } from "./events";
import { BoundedMap } from "./bounded-map";
import {
  KeyedMutex,
  balanceId,
  fingerprint,
  toTransferRecord,
  type AllowanceDoc,
  type BalanceDoc,
  type JournalDoc,
  type OpMarker,
  type TransferRecord,
  type TransferRequest,
} from "./ledger";
import { newId } from "./ids";
import type { OutboxWriter } from "./outbox";
import { insertIfAbsent, type Store } from "./store";
import { refundAllowance, spendAllowance } from "./allowance-ops";

/**
 * The transfer engine of the tokens write model: moves amounts between balances with
 * ERC-20 rules, exactly once per idempotency key, and repairs what a crash interrupted.
 *
 *  1. The journal entry is written first: its unique `key` claims the idempotency key,
 *     so a concurrent duplicate cannot run twice and a retry finds the first outcome.
 *  2. The debit, then the credit: each a compare-and-set on the balance's `version`
 *     (DESIGN rule 4) that writes a marker of the journal entry in the same write.
 *  3. The event goes to the outbox: from then on the transfer is complete.
 *  4. The entry becomes `done` (batched); only then may its markers go, since until then
 *     they are what recovery goes by (the outbox entry is deleted once published).
 *
 * No broker in here: the tokens service hands it its stores, its outbox and a way to
 * tell whether a token is live, so it runs the same in a unit test.
 */

export interface TransferStores {
  balances: Store<BalanceDoc>;
  allowances: Store<AllowanceDoc>;
  journal: Store<JournalDoc>;
}

/** What the engine asks of the token registry. */
export interface TokenLookup {
  isActive(tokenId: string, fresh?: boolean): Promise<boolean>;
}

interface EngineLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** In-process memories are caches: bounded, and losing an entry only costs a read. */
const CACHE_LIMIT = 100_000;

const after = (b: BalanceDoc | null, account: string): BalanceAfter =>
  b
    ? { account: b.account, amount: b.amount, version: b.version }
    : { account, amount: "0", version: 0 };

export class TransferEngine {
  private readonly balanceLocks = new KeyedMutex();
  /** Balances last seen by this engine; a stale one only costs a CAS miss. */
  private readonly balanceCache = new BoundedMap<string, BalanceDoc>(CACHE_LIMIT);
  /** Transfers of this engine in flight, by idempotency key. */
  private readonly inflight = new Map<string, { fp: string; done: Promise<TransferRecord> }>();
  /** Journal ids this engine is applying now. */
  private readonly running = new Set<string>();
  /** Journal ids whose event is in the outbox and whose `done` is not written yet. */
  private readonly completing = new Set<string>();
  /** Journal ids whose `done` is written: their markers may go. */
  private readonly settled = new BoundedMap<string, true>(CACHE_LIMIT);
  private doneQueue: string[] = [];
  private doneFlush: Promise<void> | null = null;

  constructor(
    private readonly stores: TransferStores,
    private readonly outbox: OutboxWriter,
    private readonly tokens: TokenLookup,
    private readonly logger: EngineLogger,
  ) {}

  /** Journal first (claims the idempotency key), then the balances, then the event. */
  async run(req: TransferRequest): Promise<TransferRecord> {
    const fp = fingerprint([req.kind, req.tokenId, req.from, req.to, req.amount, req.spender]);
    const local = this.inflight.get(req.key);
    if (local) {
      if (local.fp !== fp) throw conflict("Idempotency key was already used for another request");
      return local.done;
    }
    if (!(await this.tokens.isActive(req.tokenId))) throw notFound("Token");
    const j: JournalDoc = {
      _id: newId("trf"),
      key: req.key,
      fingerprint: fp,
      kind: req.kind,
      tokenId: req.tokenId,
      from: req.from,
      to: req.to,
      amount: req.amount,
      spender: req.spender,
      state: "pending",
      error: null,
      createdAt: new Date().toISOString(),
    };
    if (!(await insertIfAbsent(this.stores.journal, j))) return this.replay(req, fp);
    this.running.add(j._id);
    const done = this.apply(j);
    this.inflight.set(req.key, { fp, done });
    try {
      return await done;
    } finally {
      this.inflight.delete(req.key);
      this.running.delete(j._id);
    }
  }

  /** A balance as stored now ("0" when the account never held the token). */
  async balance(tokenId: string, account: string): Promise<string> {
    return (await this.readBalance(balanceId(tokenId, account), true))?.amount ?? "0";
  }

  /** The token is gone: its cached balances must not answer for it. */
  forgetToken(tokenId: string): void {
    for (const key of this.balanceCache.keys())
      if (key.startsWith(`${tokenId}:`)) this.balanceCache.delete(key);
  }

  /** Resolves once the `done` marks written so far are in the journal. */
  async idle(): Promise<void> {
    await this.doneFlush;
  }

  /**
   * Finishes the transfers a crash left pending, older than `graceMs` (on a shared
   * database, younger ones may still be running in another process). Returns how many.
   */
  async recover(graceMs: number): Promise<number> {
    const before = new Date(Date.now() - graceMs).toISOString();
    const pending = await this.stores.journal.find({
      state: "pending",
      createdAt: { $lte: before },
    });
    let count = 0;
    for (const j of pending) {
      if (this.inflight.has(j.key)) continue;
      await this.recoverTransfer(j);
      count++;
    }
    if (count > 0) this.logger.info({ count }, "Recovered unfinished transfers");
    return count;
  }

  /** A key seen before: the first outcome, whatever it was. */
  private async replay(req: TransferRequest, fp: string): Promise<TransferRecord> {
    const j = await this.stores.journal.findOne({ key: req.key });
    if (!j) return this.run(req); // dropped by recovery meanwhile: run it
    if (j.fingerprint !== fp)
      throw conflict("Idempotency key was already used for another request");
    const local = this.inflight.get(req.key);
    if (local) return local.done;
    if (j.state === "failed" && j.error) throw businessError(j.error.type, j.error.message);
    if (
      j.state === "done" ||
      this.completing.has(j._id) ||
      (await this.outbox.has(`${TOKEN_EVENTS.transferred}:${j._id}`))
    )
      return toTransferRecord(j);
    // Its `done` may have been written since `j` was read (and its event published).
    const now = await this.stores.journal.findOne({ _id: j._id });
    if (now?.state === "done") return toTransferRecord(now);
    throw conflict("A transfer with this idempotency key is in progress");
  }

  private async apply(j: JournalDoc): Promise<TransferRecord> {
    const amount = BigInt(j.amount);
    if (
      j.kind === "transferFrom" &&
      !(await spendAllowance(this.stores.allowances, j, ops => this.markerCleanup(ops)))
    ) {
      return this.fail(
        j,
        businessError("INSUFFICIENT_ALLOWANCE", "The allowance is smaller than the amount"),
      );
    }
    const insufficient = async () => {
      if (j.kind === "transferFrom") await refundAllowance(this.stores.allowances, j);
      if (!(await this.tokens.isActive(j.tokenId, true))) return this.fail(j, notFound("Token"));
      return this.fail(
        j,
        businessError("INSUFFICIENT_FUNDS", "The balance is smaller than the amount"),
      );
    };
    if (j.from === j.to || amount === 0n) {
      // Nothing moves, but the rules of a transfer still apply.
      const cur = await this.readBalance(balanceId(j.tokenId, j.from), true);
      if (BigInt(cur?.amount ?? "0") < amount) return insufficient();
      return this.complete(j, await this.balancesAfter(j));
    }
    const debited = await this.changeBalance(j.tokenId, j.from, -amount, j._id, "d");
    if (!debited) return insufficient();
    const credited = await this.changeBalance(j.tokenId, j.to, amount, j._id, "c");
    return this.complete(j, [after(debited, j.from), after(credited, j.to)]);
  }

  private async fail(j: JournalDoc, err: ClientError): Promise<never> {
    await this.stores.journal.updateOne(
      { _id: j._id },
      { $set: { state: "failed", error: { type: err.type, message: err.message } } },
    );
    throw err;
  }

  private async complete(j: JournalDoc, balances: BalanceAfter[]): Promise<TransferRecord> {
    const data: TokenTransferred = {
      transferId: j._id,
      tokenId: j.tokenId,
      from: j.from,
      to: j.to,
      amount: j.amount,
      createdAt: j.createdAt,
      balances,
    };
    await this.outbox.write([domainEvent(TOKEN_EVENTS.transferred, j._id, data)]);
    this.settle(j._id);
    return toTransferRecord(j);
  }

  private async balancesAfter(j: JournalDoc): Promise<BalanceAfter[]> {
    const accounts = j.from === j.to ? [j.from] : [j.from, j.to];
    const out: BalanceAfter[] = [];
    for (const a of accounts)
      out.push(after(await this.readBalance(balanceId(j.tokenId, a), true), a));
    return out;
  }

  private async readBalance(id: string, fresh: boolean): Promise<BalanceDoc | null> {
    if (!fresh) {
      const hit = this.balanceCache.get(id);
      if (hit) return hit;
    }
    const doc = await this.stores.balances.findOne({ _id: id });
    if (doc) this.balanceCache.set(id, doc);
    else this.balanceCache.delete(id);
    return doc;
  }

  /**
   * Adds `delta` (negative: debit) to a balance by compare-and-set on its version,
   * writing the journal marker in the same write. Null when the balance is too small.
   */
  private async changeBalance(
    tokenId: string,
    account: string,
    delta: bigint,
    journalId: string,
    marker: OpMarker,
  ): Promise<BalanceDoc | null> {
    const id = balanceId(tokenId, account);
    const store = this.stores.balances;
    return this.balanceLocks.run(id, async () => {
      let fresh = false;
      for (;;) {
        const cur = await this.readBalance(id, fresh);
        const have = BigInt(cur?.amount ?? "0");
        const next = delta < 0n ? checkedSub(have, -delta) : checkedAdd(have, delta);
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
            this.balanceCache.set(id, doc);
            return doc;
          }
          fresh = true; // created meanwhile: read it and retry
          continue;
        }
        const unset = await this.markerCleanup(cur.ops);
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
          this.balanceCache.set(id, doc);
          return doc;
        }
        fresh = true; // CAS miss: someone else wrote it; read again and retry
      }
    });
  }

  /** Markers of settled journals, to unset in the next write of their balance. */
  private async markerCleanup(ops: Record<string, OpMarker>): Promise<Record<string, true>> {
    const unset: Record<string, true> = {};
    const unknown: string[] = [];
    for (const jid of Object.keys(ops ?? {})) {
      if (this.settled.has(jid)) unset[`ops.${jid}`] = true;
      else unknown.push(jid);
    }
    // Markers left by a previous run (or another replica): ask the journal. A
    // pending entry's markers stay: recovery needs them.
    const foreign = unknown.filter(jid => !this.running.has(jid) && !this.completing.has(jid));
    if (foreign.length > 0) {
      const docs = await this.stores.journal.find({
        _id: { $in: foreign },
        state: { $ne: "pending" },
      });
      for (const j of docs) {
        this.settled.set(j._id, true);
        unset[`ops.${j._id}`] = true;
      }
    }
    return unset;
  }

  /** The transfer's event is in the outbox: it is complete; its `done` is written in a batch. */
  private settle(journalId: string): void {
    this.completing.add(journalId);
    this.doneQueue.push(journalId);
    if (!this.doneFlush) {
      this.doneFlush = new Promise<void>(resolve => setImmediate(resolve)).then(() =>
        this.flushDone(),
      );
    }
  }

  private async flushDone(): Promise<void> {
    try {
      while (this.doneQueue.length > 0) {
        const ids = this.doneQueue.splice(0, 1000);
        try {
          await this.stores.journal.update(
            { _id: { $in: ids }, state: "pending" },
            { $set: { state: "done" } },
          );
          for (const id of ids) this.settled.set(id, true);
        } finally {
          for (const id of ids) this.completing.delete(id);
        }
      }
    } catch (err) {
      // Still pending, markers kept: recovery completes them again (consumers dedupe).
      this.logger.warn({ err }, "Marking journal entries done failed");
    } finally {
      this.doneFlush = null;
    }
  }

  /**
   * One unfinished transfer. Its markers tell which steps happened: debited and
   * credited → only the event is missing; debited only → credit it (the debit proved
   * the funds); not debited → nothing moved (an allowance spent is given back) and the
   * entry goes, so a retry with the key runs it anew. The client was not answered yet.
   */
  private async recoverTransfer(j: JournalDoc): Promise<void> {
    if (await this.outbox.has(`${TOKEN_EVENTS.transferred}:${j._id}`)) {
      this.settle(j._id);
      return;
    }
    const amount = BigInt(j.amount);
    const moves = j.from !== j.to && amount !== 0n;
    const from = await this.readBalance(balanceId(j.tokenId, j.from), true);
    const debited = moves && from?.ops?.[j._id] === "d";
    if (!debited) {
      if (j.kind === "transferFrom") await refundAllowance(this.stores.allowances, j);
      await this.stores.journal.remove({ _id: j._id, state: "pending" });
      return;
    }
    const to = await this.readBalance(balanceId(j.tokenId, j.to), true);
    if (to?.ops?.[j._id] !== "c") await this.changeBalance(j.tokenId, j.to, amount, j._id, "c");
    await this.complete(j, await this.balancesAfter(j));
  }
}
