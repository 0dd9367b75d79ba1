/**
 * NeDB updates a document in every index of its collection by removing the old
 * document from the index's AVL tree and inserting the new one (with rebalancing and
 * key comparisons both ways), even when the indexed field did not change, which is
 * nearly always: a balance's `_id`, `tokenId` and `account` never do. Under load that
 * was a fifth of the tokens process's CPU. When a pair keeps its key, swapping the
 * document in the key's node is the same end state: one search, no rebalancing.
 * NeDB runs one operation per collection at a time, so nothing sees the swap midway.
 */

interface IndexedDoc {
  _id: string;
}
interface Pair {
  oldDoc: IndexedDoc;
  newDoc: IndexedDoc;
}
interface NedbIndex {
  fieldName: string | string[];
  tree: { search(key: unknown): IndexedDoc[] };
  updateMultipleDocs(pairs: Pair[]): void;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Index = require("@seald-io/nedb/lib/indexes") as { prototype: NedbIndex };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const model = require("@seald-io/nedb/lib/model") as {
  getDotValue(doc: unknown, field: string): unknown;
};

const scalar = (v: unknown): v is string | number | boolean =>
  typeof v === "string" || typeof v === "number" || typeof v === "boolean";

let installed = false;

export function tuneNedb(): void {
  if (installed) return;
  installed = true;
  const original = Index.prototype.updateMultipleDocs;
  Index.prototype.updateMultipleDocs = function (this: NedbIndex, pairs: Pair[]): void {
    // Compound indexes (an array of fields) keep NeDB's own path.
    if (typeof this.fieldName !== "string") return original.call(this, pairs);
    const moved: Pair[] = [];
    const swapped: Array<{ data: IndexedDoc[]; at: number; pair: Pair }> = [];
    for (const pair of pairs) {
      const key = model.getDotValue(pair.oldDoc, this.fieldName);
      if (scalar(key) && key === model.getDotValue(pair.newDoc, this.fieldName)) {
        const data = this.tree.search(key);
        const at = data.indexOf(pair.oldDoc);
        if (at >= 0) {
          data[at] = pair.newDoc;
          swapped.push({ data, at, pair });
          continue;
        }
      }
      moved.push(pair);
    }
    if (moved.length === 0) return;
    try {
      original.call(this, moved);
    } catch (err) {
      // NeDB expects a failing index to be unchanged (it reverts the others).
      for (const s of swapped) s.data[s.at] = s.pair.oldDoc;
      throw err;
    }
  };
}
