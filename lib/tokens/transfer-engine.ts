import {
  ClientError,
  businessError,
  conflict,
  inProgress,
  notFound,
  statusOf,
} from "../shared/errors";
import {
  TOKEN_EVENTS,
  domainEvent,
  type BalanceAfter,
  type TokenTransferred,
} from "../events/domain";
import { BalanceBook } from "./balance-book";
import {
  balanceId,
  fingerprint,
  toTransferRecord,
  type AllowanceDoc,
  type BalanceDoc,
  type JournalDoc,
  type TransferRecord,
  type TransferRequest,
  TakenOverError,
} from "./ledger";
import { newId } from "../shared/ids";
import type { OutboxWriter } from "../messaging/outbox";
import { insertIfAbsent, pruneOlderThan, type Store } from "../store/store";
import { refundAllowance, spendAllowance } from "./allowance-ops";

/**
 * The transfer engine of the tokens write model: moves amounts between balances with
 * ERC-20 rules, exactly once per idempotency key, and repairs what a crash interrupted.
 *
 *  1. The journal entry is written first: its unique `key` claims the idempotency key,
 *     so a concurrent duplicate cannot run twice and a retry finds the first outcome.
 *  2. The debit, then the credit: each a compare-and-set on the balance's `version`
 *     (docs/architecture.md rule 4) that writes a marker of the journal entry in the same write.
 *  3. The event goes to the outbox: from then on the transfer is complete.
 *  4. The entry becomes `done` (batched); only then may its markers go, since until then
 *     they are what recovery goes by (the outbox entry is deleted once published).
 *
 * Every pending entry has an owner and a lease. Another engine (a replica on the same
 * MongoDB, or this process after a restart) recovers an entry only after claiming it by
 * compare-and-set once its lease has expired, and the owner renews its lease before a
 * money step once it runs short, so an owner stalled past its lease moves nothing more.
 * An entry abandoned before anything moved is marked failed, never deleted: a client may
 * still retry its key, and must not have it paid by a later run. Done and failed entries
 * are pruned after `retentionMs`, which must outlast every retry window.
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

export interface EngineOptions {
  /** This engine's name in the entries it runs: unique per process (node id + instance). */
  owner: string;
  /** How long a pending entry is its owner's before another engine may take it over. */
  leaseMs: number;
  /** Done and failed entries older than this are pruned, and their keys forgotten. */
  retentionMs: number;
}

const ABANDONED = {
  type: "CONFLICT",
  status: 409,
  message:
    "This transfer was interrupted before anything moved; send it again with a new Idempotency-Key",
};

const after = (b: BalanceDoc | null, account: string): BalanceAfter =>
  b
    ? { account: b.account, amount: b.amount, version: b.version }
    : { account, amount: "0", version: 0 };

export class TransferEngine {
  private readonly book: BalanceBook;
  /** Transfers of this engine in flight, by idempotency key. */
  private readonly inflight = new Map<string, { fp: string; done: Promise<TransferRecord> }>();
  /** Journal ids this engine is applying now. */
  private readonly running = new Set<string>();
  /** Journal ids whose event is in the outbox and whose `done` is not written yet. */
  private readonly completing = new Set<string>();
  private doneQueue: string[] = [];
  private doneFlush: Promise<void> | null = null;

  constructor(
    private readonly stores: TransferStores,
    private readonly outbox: OutboxWriter,
    private readonly tokens: TokenLookup,
    private readonly logger: EngineLogger,
    private readonly opts: EngineOptions,
  ) {
    this.book = new BalanceBook(
      stores.balances,
      stores.journal,
      jid => this.running.has(jid) || this.completing.has(jid),
    );
  }

  /** Journal first (claims the idempotency key), then the balances, then the event. */
  async run(req: TransferRequest): Promise<TransferRecord> {
    const fp = fingerprint([req.kind, req.tokenId, req.from, req.to, req.amount, req.spender]);
    const joined = () => {
      const local = this.inflight.get(req.key);
      if (local && local.fp !== fp)
        throw conflict("Idempotency key was already used for another request");
      return local?.done;
    };
    const early = joined();
    if (early) return early;
    if (!(await this.tokens.isActive(req.tokenId))) throw notFound("Token");
    const late = joined(); // another call with this key started during the await
    if (late) return late;
    // Claimed here before the journal is written, so this engine's own sweep never takes it.
    const done = this.start(req, fp);
    this.inflight.set(req.key, { fp, done });
    try {
      return await done;
    } finally {
      if (this.inflight.get(req.key)?.done === done) this.inflight.delete(req.key);
    }
  }

  private async start(req: TransferRequest, fp: string): Promise<TransferRecord> {
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
      pending: true,
      error: null,
      createdAt: new Date().toISOString(),
      owner: this.opts.owner,
      leaseUntil: Date.now() + this.opts.leaseMs,
    };
    if (!(await insertIfAbsent(this.stores.journal, j))) return this.replay(req, fp);
    this.running.add(j._id);
    try {
      return await this.apply(j);
    } finally {
      this.running.delete(j._id);
    }
  }

  /** A balance as stored now ("0" when the account never held the token). */
  balance(tokenId: string, account: string): Promise<string> {
    return this.book.amount(tokenId, account);
  }

  /** The token is gone: its cached balances must not answer for it. */
  forgetToken(tokenId: string): void {
    this.book.forgetToken(tokenId);
  }

  /** Resolves once the `done` marks written so far are in the journal. */
  async idle(): Promise<void> {
    await this.doneFlush;
  }

  /**
   * Takes over the pending entries whose lease expired (their owner died or stalled)
   * and drives each to done or failed. `all`: every pending entry not running here, for
   * a start on NeDB files, whose lock proves no other process runs any. Returns how many.
   */
  async recover(all = false): Promise<number> {
    // Entries written before `pending` existed: flagged once, so recovery finds them.
    if (all)
      await this.stores.journal.update(
        { state: "pending", pending: { $exists: false } },
        { $set: { pending: true } },
      );
    const now = Date.now();
    const pending = await this.stores.journal.find({ pending: true });
    let count = 0;
    for (const j of pending) {
      if (this.inflight.has(j.key) || this.running.has(j._id)) continue;
      if (!all && (j.leaseUntil ?? 0) > now) continue;
      const claimed = await this.stores.journal.updateOne(
        { _id: j._id, state: "pending", leaseUntil: j.leaseUntil ?? { $exists: false } },
        { $set: { owner: this.opts.owner, leaseUntil: now + this.opts.leaseMs } },
      );
      if (!claimed) continue; // another engine claimed it first
      this.running.add(j._id);
      try {
        await this.recoverTransfer(claimed);
        count++;
      } finally {
        this.running.delete(j._id);
      }
    }
    if (count > 0) this.logger.info({ count }, "Recovered unfinished transfers");
    return count;
  }

  /** Removes done and failed entries past their retention, oldest first. Returns how many. */
  prune(): Promise<number> {
    return pruneOlderThan(this.stores.journal, "createdAt", Date.now() - this.opts.retentionMs, {
      iso: true,
      where: { pending: { $exists: false } },
    });
  }

  /** A key seen before: the first outcome, whatever it was. */
  private async replay(req: TransferRequest, fp: string): Promise<TransferRecord> {
    const j = await this.stores.journal.findOne({ key: req.key });
    if (!j) return this.start(req, fp); // pruned meanwhile: a key past retention is new
    if (j.fingerprint !== fp)
      throw conflict("Idempotency key was already used for another request");
    if (j.state === "failed" && j.error)
      throw new ClientError(
        j.error.message,
        j.error.status ?? statusOf(j.error.type),
        j.error.type,
      );
    if (
      j.state === "done" ||
      this.completing.has(j._id) ||
      (await this.outbox.has(`${TOKEN_EVENTS.transferred}:${j._id}`))
    )
      return toTransferRecord(j);
    // Its `done` may have been written since `j` was read (and its event published).
    const now = await this.stores.journal.findOne({ _id: j._id });
    if (now?.state === "done") return toTransferRecord(now);
    throw inProgress("A transfer with this idempotency key is in progress");
  }

  private async apply(j: JournalDoc): Promise<TransferRecord> {
    const amount = BigInt(j.amount);
    if (j.kind === "transferFrom") {
      await this.ensureLease(j);
      const spent = await spendAllowance(this.stores.allowances, j, ops => this.book.cleanup(ops));
      if (!spent) {
        return this.fail(
          j,
          businessError("INSUFFICIENT_ALLOWANCE", "The allowance is smaller than the amount"),
        );
      }
    }
    const insufficient = async () => {
      if (j.kind === "transferFrom") await refundAllowance(this.stores.allowances, j);
      if (!(await this.tokens.isActive(j.tokenId, true))) return this.fail(j, notFound("Token"));
      return this.fail(
        j,
        businessError("INSUFFICIENT_FUNDS", "The balance is smaller than the amount"),
      );
    };
    await this.ensureLease(j);
    if (j.from === j.to || amount === 0n) {
      // Nothing moves, but the rules of a transfer still apply; the `n` marker is what
      // tells recovery it was done, as `d` and `c` do for a transfer that moves.
      const marked = await this.book.change(j.tokenId, j.from, 0n, j._id, "n", amount);
      if (!marked) return insufficient();
      return this.complete(j, await this.balancesAfter(j));
    }
    const debited = await this.book.change(j.tokenId, j.from, -amount, j._id, "d");
    if (!debited) return insufficient();
    await this.ensureLease(j);
    const credited = await this.book.change(j.tokenId, j.to, amount, j._id, "c");
    return this.complete(j, [after(debited, j.from), after(credited, j.to)]);
  }

  /**
   * The owner's lease must outlast the next step by a margin (clocks of two nodes may
   * differ by less than it); when it runs short it is renewed by compare-and-set, and a
   * lost lease stops the owner before it moves anything more.
   */
  private async ensureLease(j: JournalDoc): Promise<void> {
    const now = Date.now();
    if (now < (j.leaseUntil ?? 0) - this.opts.leaseMs / 3) return;
    const renewed = await this.stores.journal.updateOne(
      { _id: j._id, state: "pending", owner: this.opts.owner },
      { $set: { leaseUntil: now + this.opts.leaseMs } },
    );
    if (!renewed) throw new TakenOverError();
    j.leaseUntil = renewed.leaseUntil;
  }

  private async fail(j: JournalDoc, err: ClientError): Promise<never> {
    await this.stores.journal.updateOne(
      { _id: j._id, state: "pending", owner: this.opts.owner },
      {
        $set: {
          state: "failed",
          error: { type: err.type, message: err.message, status: err.code },
        },
        $unset: { pending: true },
      },
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
      out.push(after(await this.book.read(balanceId(j.tokenId, a), true), a));
    return out;
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
            { $set: { state: "done" }, $unset: { pending: true } },
          );
          for (const id of ids) this.book.markSettled(id);
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
   * One unfinished transfer, claimed by this engine. Its markers tell which steps
   * happened: debited (or, moving nothing, marked `n`) → finish it, crediting if the credit
   * is missing (the debit proved the funds); nothing moved → an allowance spent is given
   * back and the entry fails, so a retry of its key hears that and nothing moves later.
   */
  private async recoverTransfer(j: JournalDoc): Promise<void> {
    if (await this.outbox.has(`${TOKEN_EVENTS.transferred}:${j._id}`)) {
      this.settle(j._id);
      return;
    }
    const amount = BigInt(j.amount);
    const moves = j.from !== j.to && amount !== 0n;
    // Either the owner's first step is there, or from now on it never will be.
    const first = await this.book.fence(j.tokenId, j.from, j._id);
    if (first === "x") {
      if (j.kind === "transferFrom") await refundAllowance(this.stores.allowances, j);
      await this.stores.journal.updateOne(
        { _id: j._id, state: "pending", owner: this.opts.owner },
        { $set: { state: "failed", error: ABANDONED }, $unset: { pending: true } },
      );
      this.logger.info({ transferId: j._id }, "Abandoned transfer failed: nothing had moved");
      return;
    }
    if (moves) await this.book.change(j.tokenId, j.to, amount, j._id, "c");
    await this.complete(j, await this.balancesAfter(j));
  }
}
