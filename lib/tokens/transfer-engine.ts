import { ClientError, businessError, conflict, notFound, statusOf } from "../shared/errors";
import {
  TOKEN_EVENTS,
  domainEvent,
  type BalanceAfter,
  type TokenTransferred,
} from "../events/domain";
import { BALANCES, amountOf, changeBalance } from "./balance-book";
import {
  fingerprint,
  toTransferRecord,
  type AllowanceDoc,
  type BalanceDoc,
  type JournalDoc,
  type TransferRecord,
  type TransferRequest,
} from "./ledger";
import { newId } from "../shared/ids";
import type { OutboxWriter } from "../messaging/outbox";
import {
  DuplicateKeyError,
  pruneOlderThan,
  type Database,
  type Store,
  type TxStores,
} from "../store/store";
import { ALLOWANCES, allowanceLeft, spendAllowance } from "./allowance-ops";

/**
 * The transfer engine of the tokens write model: moves amounts between balances with
 * ERC-20 rules, exactly once per idempotency key. A transfer is one transaction of the
 * tokens database (docs/architecture.md rule 4): its journal entry (whose unique `key`
 * claims the idempotency key), the allowance it spends, the guarded debit, the credit
 * and its event in the outbox all commit together, or nothing does. A reader never sees
 * money in between two balances, and a crash leaves nothing to repair: what committed
 * is whole, and what did not is gone, so its retry runs it anew.
 *
 * A refused transfer (funds, allowance) commits its journal entry alone, so a retry of
 * its key hears the same refusal even if the funds arrived since. Entries are pruned
 * after `retentionMs`, which must outlast every retry window.
 *
 * No broker in here: the tokens service hands it its database, its outbox and a way to
 * tell whether a token is live, so it runs the same in a unit test.
 */

/** Collection name in the tokens service's database. */
export const JOURNAL = "journal";

/** What the engine asks of the token registry. */
export interface TokenLookup {
  isActive(tokenId: string, fresh?: boolean): Promise<boolean>;
}

export interface EngineOptions {
  /** Done and failed entries older than this are pruned, and their keys forgotten. */
  retentionMs: number;
}

const after = (b: BalanceDoc, account: string): BalanceAfter => ({
  account,
  amount: b.amount,
  version: b.version,
});

/** What one transfer's transaction ends in. */
type Outcome =
  | { kind: "done"; j: JournalDoc; send: () => void }
  | { kind: "refused"; j: JournalDoc; err: ClientError }
  | { kind: "seen"; j: JournalDoc };

export class TransferEngine {
  /** Transfers of this engine in flight, by idempotency key. */
  private readonly inflight = new Map<string, { fp: string; done: Promise<TransferRecord> }>();

  constructor(
    private readonly db: Database,
    private readonly outbox: OutboxWriter,
    private readonly tokens: TokenLookup,
    private readonly opts: EngineOptions,
  ) {}

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
    const done = this.execute(req, fp);
    this.inflight.set(req.key, { fp, done });
    try {
      return await done;
    } finally {
      if (this.inflight.get(req.key)?.done === done) this.inflight.delete(req.key);
    }
  }

  /** A balance as stored now ("0" when the account never held the token). */
  balance(tokenId: string, account: string): Promise<string> {
    return amountOf(this.db.store<BalanceDoc>(BALANCES), tokenId, account);
  }

  /**
   * A transfer that moved (a refused one is no transfer) from the journal, while its
   * retention keeps it: what answers a transfer's Location before the activity history
   * has recorded it. Null when unknown.
   */
  async journaled(tokenId: string, transferId: string): Promise<TransferRecord | null> {
    const j = await this.db.store<JournalDoc>(JOURNAL).findOne({ _id: transferId });
    if (!j || j.tokenId !== tokenId || j.state !== "done") return null;
    return { ...toTransferRecord(j), ...(j.spender !== null ? { spender: j.spender } : {}) };
  }

  /** Removes done and failed entries past their retention, oldest first. Returns how many. */
  prune(): Promise<number> {
    return pruneOlderThan(
      this.db.store<JournalDoc>(JOURNAL),
      "createdAt",
      Date.now() - this.opts.retentionMs,
      { iso: true },
    );
  }

  private async execute(req: TransferRequest, fp: string): Promise<TransferRecord> {
    let outcome: Outcome;
    try {
      outcome = await this.db.transaction(tx => this.transfer(tx, req, fp));
    } catch (err) {
      // Another process committed this key between our read and our insert.
      if (!(err instanceof DuplicateKeyError)) throw err;
      const j = await this.db.store<JournalDoc>(JOURNAL).findOne({ key: req.key });
      if (!j) throw err;
      outcome = { kind: "seen", j };
    }
    if (outcome.kind === "seen") return this.replay(outcome.j, fp);
    if (outcome.kind === "done") {
      outcome.send();
      return toTransferRecord(outcome.j);
    }
    // A deleted token's balances are gone: say so rather than "insufficient funds".
    if (
      outcome.err.type === "INSUFFICIENT_FUNDS" &&
      !(await this.tokens.isActive(req.tokenId, true))
    )
      throw notFound("Token");
    throw outcome.err;
  }

  /** The transaction of one transfer: everything it writes, or only its refusal. */
  private async transfer(tx: TxStores, req: TransferRequest, fp: string): Promise<Outcome> {
    const journal = tx.store<JournalDoc>(JOURNAL);
    const seen = await journal.findOne({ key: req.key });
    if (seen) return { kind: "seen", j: seen };
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
      state: "done",
      error: null,
      createdAt: new Date().toISOString(),
    };
    const balances = tx.store<BalanceDoc>(BALANCES);
    const allowances = tx.store<AllowanceDoc>(ALLOWANCES);
    const amount = BigInt(j.amount);
    // Every check before any write: a refusal writes nothing but its journal entry.
    const allowance = j.kind === "transferFrom" ? await allowanceLeft(allowances, j) : undefined;
    if (allowance === null)
      return this.refuse(
        journal,
        j,
        businessError("INSUFFICIENT_ALLOWANCE", "The allowance is smaller than the amount"),
      );
    if (BigInt(await amountOf(balances, j.tokenId, j.from)) < amount)
      return this.refuse(
        journal,
        j,
        businessError("INSUFFICIENT_FUNDS", "The balance is smaller than the amount"),
      );
    if (allowance) await spendAllowance(allowances, allowance);
    // Nothing moves to oneself or for 0, but the rules above still applied.
    const moves = j.from !== j.to && amount !== 0n;
    const debited = await changeBalance(balances, j.tokenId, j.from, moves ? -amount : 0n);
    if (!debited) throw new Error("Balance fell inside its transaction");
    const changed = [after(debited, j.from)];
    if (moves) changed.push(after((await changeBalance(balances, j.tokenId, j.to, amount))!, j.to));
    await journal.insert(j);
    const data: TokenTransferred = {
      transferId: j._id,
      tokenId: j.tokenId,
      from: j.from,
      to: j.to,
      amount: j.amount,
      ...(j.spender !== null ? { spender: j.spender } : {}),
      createdAt: j.createdAt,
      balances: changed,
    };
    const send = await this.outbox.writeIn(tx, [
      domainEvent(TOKEN_EVENTS.transferred, j._id, data),
    ]);
    return { kind: "done", j, send };
  }

  private async refuse(
    journal: Store<JournalDoc>,
    j: JournalDoc,
    err: ClientError,
  ): Promise<Outcome> {
    j.state = "failed";
    j.error = { type: err.type, message: err.message, status: err.code };
    await journal.insert(j);
    return { kind: "refused", j, err };
  }

  /** A key seen before: the first outcome, whatever it was. */
  private replay(j: JournalDoc, fp: string): TransferRecord {
    if (j.fingerprint !== fp)
      throw conflict("Idempotency key was already used for another request");
    if (j.state === "failed" && j.error)
      throw new ClientError(
        j.error.message,
        j.error.status ?? statusOf(j.error.type),
        j.error.type,
      );
    return toTransferRecord(j);
  }
}
