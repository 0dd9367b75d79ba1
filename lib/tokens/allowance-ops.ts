import { checkedSub, formatAmount } from "../shared/amount";
import { allowanceId, type AllowanceDoc, type JournalDoc } from "./ledger";
import type { Store } from "../store/store";

/** Collection name in the tokens service's database. */
export const ALLOWANCES = "allowances";

/**
 * The allowance a transferFrom spends, read inside its transaction: what would be left
 * after it, or null when it is too small.
 */
export async function allowanceLeft(
  store: Store<AllowanceDoc>,
  j: JournalDoc,
): Promise<{ doc: AllowanceDoc; left: bigint } | null> {
  const doc = await store.findOne({ _id: allowanceId(j.tokenId, j.from, j.spender ?? "") });
  const left = doc ? checkedSub(BigInt(doc.amount), BigInt(j.amount)) : null;
  return doc && left !== null ? { doc, left } : null;
}

/** Spends what allowanceLeft found, in the same transaction. */
export async function spendAllowance(
  store: Store<AllowanceDoc>,
  found: { doc: AllowanceDoc; left: bigint },
): Promise<void> {
  const { doc, left } = found;
  const spent = await store.updateOne(
    { _id: doc._id, version: doc.version },
    { $set: { amount: formatAmount(left), version: doc.version + 1 } },
  );
  if (!spent) throw new Error(`Allowance ${doc._id} changed inside its transaction`);
}
