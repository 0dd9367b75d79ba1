import { openNedbStore } from "../../lib/store/nedb/nedb-store";
import { Outbox, type OutboxDoc } from "../../lib/messaging/outbox";
import { TokenRegistry, type TokenDoc, type TokenStores } from "../../lib/tokens/token-registry";
import {
  TransferEngine,
  type EngineOptions,
  type TransferStores,
} from "../../lib/tokens/transfer-engine";
import type { DomainEvent } from "../../lib/events/domain";
import type { AllowanceDoc, BalanceDoc, JournalDoc } from "../../lib/tokens/ledger";
import type { Store } from "../../lib/store/store";

/**
 * The tokens write model's engines over real NeDB stores in memory, without a broker:
 * what a unit test of lib/ builds. `restart()` gives new engine instances over the same
 * stores, as a process started again on the same database would have.
 */

export type LedgerStores = TransferStores & TokenStores & { outbox: Store<OutboxDoc> };

export const quiet = { info: () => undefined, warn: () => undefined };

export async function openLedgerStores(): Promise<LedgerStores> {
  return {
    tokens: await openNedbStore<TokenDoc>("tokens", { unique: ["symbol"], indexes: ["state"] }),
    balances: await openNedbStore<BalanceDoc>("balances", { indexes: ["tokenId", "account"] }),
    allowances: await openNedbStore<AllowanceDoc>("allowances", { indexes: ["tokenId"] }),
    journal: await openNedbStore<JournalDoc>("journal", {
      unique: ["key"],
      indexes: ["createdAt"],
      sparse: ["pending"],
    }),
    outbox: await openNedbStore<OutboxDoc>("outbox", {}),
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

let engines = 0;

/** Engines over `stores`; the outbox publishes into `published` (the channels' place). */
export function ledgerOn(stores: LedgerStores, opts: Partial<EngineOptions> = {}): Ledger {
  const published: DomainEvent[] = [];
  const outbox = new Outbox(
    stores.outbox,
    { ready: () => true, publish: async (_type, event) => void published.push(event) },
    quiet,
  );
  // The registry tells the engine of deleted tokens; the engine asks the registry what is live.
  const registry = new TokenRegistry(stores, outbox, quiet, id => engine.forgetToken(id));
  const engine = new TransferEngine(stores, outbox, registry, quiet, {
    owner: `engine-${++engines}`,
    leaseMs: 30_000,
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
