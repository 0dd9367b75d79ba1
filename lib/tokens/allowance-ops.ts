import { checkedAdd, checkedSub, formatAmount } from "../shared/amount";
import { allowanceId, type AllowanceDoc, type JournalDoc, type OpMarker } from "./ledger";
import type { Store } from "../store/store";

/**
 * The allowance steps of a transferFrom (lib/tokens/transfer-engine.ts): both compare-and-set on
 * the allowance's version, with the journal entry's marker `s` written in the same write
 * so recovery can tell whether the spend happened and give it back exactly once.
 */

/** Takes `amount` from the spender's allowance. False when too small. */
export async function spendAllowance(
  store: Store<AllowanceDoc>,
  j: JournalDoc,
  /** Markers of settled journals to unset in the same write (see the engine). */
  cleanup: (ops: Record<string, OpMarker>) => Promise<Record<string, true>>,
): Promise<boolean> {
  const id = allowanceId(j.tokenId, j.from, j.spender ?? "");
  for (;;) {
    const cur = await store.findOne({ _id: id });
    const left = cur ? checkedSub(BigInt(cur.amount), BigInt(j.amount)) : null;
    if (!cur || left === null) return false;
    const unset = await cleanup(cur.ops);
    const doc = await store.updateOne(
      { _id: id, version: cur.version },
      {
        $set: { amount: formatAmount(left), version: cur.version + 1, [`ops.${j._id}`]: "s" },
        ...(Object.keys(unset).length > 0 ? { $unset: unset } : {}),
      },
    );
    if (doc) return true;
  }
}

/** Gives back what `spendAllowance` took for `j`, once: guarded by its marker. */
export async function refundAllowance(store: Store<AllowanceDoc>, j: JournalDoc): Promise<void> {
  const id = allowanceId(j.tokenId, j.from, j.spender ?? "");
  for (;;) {
    const cur = await store.findOne({ _id: id });
    if (!cur || cur.ops?.[j._id] !== "s") return;
    const amount = formatAmount(checkedAdd(BigInt(cur.amount), BigInt(j.amount)));
    const doc = await store.updateOne(
      { _id: id, version: cur.version },
      { $set: { amount, version: cur.version + 1 }, $unset: { [`ops.${j._id}`]: true } },
    );
    if (doc) return;
  }
}
