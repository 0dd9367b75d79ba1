import { SqliteDatabase } from "../../lib/store/sqlite/sqlite-database";
import { Outbox, type OutboxDoc } from "../../lib/messaging/outbox";
import { TokenRegistry, type TokenDoc, type TokenStores } from "../../lib/tokens/token-registry";
import { TransferEngine, type EngineOptions } from "../../lib/tokens/transfer-engine";
import type { DomainEvent } from "../../lib/events/domain";
import type { AllowanceDoc, BalanceDoc, JournalDoc } from "../../lib/tokens/ledger";
import type { Database, Store } from "../../lib/store/store";

/**
 * The tokens write model's engines over a real SQLite database in memory, without a
 * broker: what a unit test of lib/ builds. `ledgerOn` again gives new engine instances
 * over the same database, as a process started again on the same file would have.
 */

export type LedgerStores = TokenStores & {
  balances: Store<BalanceDoc>;
  allowances: Store<AllowanceDoc>;
  journal: Store<JournalDoc>;
  outbox: Store<OutboxDoc>;
  database: Database;
};

export const quiet = { info: () => undefined, warn: () => undefined };

/** The tokens service's collections (services/tokens.service.ts), in memory. */
export async function openLedgerStores(): Promise<LedgerStores> {
  const database = SqliteDatabase.open({
    tokens: { unique: ["symbol"], indexes: ["state"] },
    balances: { indexes: ["tokenId", "account"] },
    allowances: { indexes: ["tokenId"] },
    journal: { unique: ["key"], indexes: ["createdAt"] },
    outbox: {},
  });
  return {
    database,
    tokens: database.store<TokenDoc>("tokens"),
    balances: database.store<BalanceDoc>("balances"),
    allowances: database.store<AllowanceDoc>("allowances"),
    journal: database.store<JournalDoc>("journal"),
    outbox: database.store<OutboxDoc>("outbox"),
  };
}

export interface Ledger {
  stores: LedgerStores;
  outbox: Outbox;
  registry: TokenRegistry;
  engine: TransferEngine;
  /** Everything the outbox published, in order. */
  published: DomainEvent[];
}

/** Engines over `stores`; the outbox publishes into `published` (the channels' place). */
export function ledgerOn(stores: LedgerStores, opts: Partial<EngineOptions> = {}): Ledger {
  const published: DomainEvent[] = [];
  const outbox = new Outbox(
    stores.outbox,
    { ready: () => true, publish: async (_type, event) => void published.push(event) },
    quiet,
  );
  const registry = new TokenRegistry(stores.database, outbox, quiet);
  const engine = new TransferEngine(stores.database, outbox, registry, {
    retentionMs: 7 * 24 * 3600_000,
    ...opts,
  });
  return { stores, outbox, registry, engine, published };
}

/** Sum of a token's balances: must equal its supply whatever happened. */
export async function sumOfBalances(stores: LedgerStores, tokenId: string): Promise<bigint> {
  const rows = await stores.balances.find({ tokenId });
  return rows.reduce((sum, b) => sum + BigInt(b.amount), 0n);
}
