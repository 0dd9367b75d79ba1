import { amountSortKey, checkedAdd, checkedSub, formatAmount } from "../shared/amount";
import { balanceId, type BalanceDoc } from "./ledger";
import type { Store } from "../store/store";

/**
 * The balances of the tokens write model (docs/architecture.md rule 4). Every change is
 * made inside the transaction of the transfer it belongs to (lib/tokens/transfer-engine.ts),
 * so a reader sees a transfer's debit and credit together or neither. The version still
 * grows with every write: a write conflict on MongoDB is detected by it and the
 * transaction retried.
 */

/** Collection names in the tokens service's database. */
export const BALANCES = "balances";

/** A balance as stored now ("0" when the account never held the token). */
export async function amountOf(
  balances: Store<BalanceDoc>,
  tokenId: string,
  account: string,
): Promise<string> {
  return (await balances.findOne({ _id: balanceId(tokenId, account) }))?.amount ?? "0";
}

/**
 * Adds `delta` (which may be negative) to a balance, creating it at 0 first. Null when
 * it would go below 0, and then nothing is written. Throws when it would pass the
 * largest amount (checkedAdd).
 */
export async function changeBalance(
  balances: Store<BalanceDoc>,
  tokenId: string,
  account: string,
  delta: bigint,
): Promise<BalanceDoc | null> {
  const id = balanceId(tokenId, account);
  const cur = await balances.findOne({ _id: id });
  const held = cur ? BigInt(cur.amount) : 0n;
  const next = delta < 0n ? checkedSub(held, -delta) : checkedAdd(held, delta);
  if (next === null) return null;
  const amount = formatAmount(next);
  if (!cur) {
    const doc: BalanceDoc = {
      _id: id,
      tokenId,
      account,
      amount,
      sortKey: amountSortKey(amount),
      version: 1,
    };
    await balances.insert(doc);
    return doc;
  }
  const doc = await balances.updateOne(
    { _id: id, version: cur.version },
    { $set: { amount, sortKey: amountSortKey(amount), version: cur.version + 1 } },
  );
  // Inside a transaction no one else writes it between the read and the write.
  if (!doc) throw new Error(`Balance ${id} changed inside its transaction`);
  return doc;
}
