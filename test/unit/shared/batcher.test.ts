import { describe, expect, it } from "vitest";
import { KeyedBatcher } from "../../../lib/shared/batcher";

const tick = () => new Promise(r => setTimeout(r, 5));

describe("KeyedBatcher", () => {
  it("puts what arrives together in one batch, and what arrives meanwhile in the next", async () => {
    const batches: number[][] = [];
    const b = new KeyedBatcher<number>(async (_key, items) => {
      batches.push(items);
      await tick();
    });
    const first = [1, 2, 3].map(i => b.submit("k", i));
    await new Promise(r => setImmediate(r));
    await new Promise(r => setImmediate(r));
    const second = [4, 5].map(i => b.submit("k", i)); // while [1, 2, 3] is processed
    await Promise.all([...first, ...second]);
    expect(batches).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    expect(b.size).toBe(0);
  });

  it("never overlaps batches of one key, runs different keys side by side", async () => {
    const running = new Map<string, number>();
    let most = 0;
    let together = 0;
    const b = new KeyedBatcher<number>(async key => {
      running.set(key, (running.get(key) ?? 0) + 1);
      most = Math.max(most, running.get(key)!);
      together = Math.max(
        together,
        [...running.values()].reduce((s, n) => s + n, 0),
      );
      await tick();
      running.set(key, running.get(key)! - 1);
    }, 2);
    await Promise.all(Array.from({ length: 10 }, (_, i) => b.submit(i % 2 === 0 ? "a" : "b", i)));
    expect(most).toBe(1);
    expect(together).toBe(2);
  });

  it("keeps batches to maxBatch items", async () => {
    const sizes: number[] = [];
    const b = new KeyedBatcher<number>(async (_k, items) => void sizes.push(items.length), 3);
    await Promise.all(Array.from({ length: 7 }, (_, i) => b.submit("k", i)));
    expect(sizes).toEqual([3, 3, 1]);
  });

  it("rejects exactly the items of a failed batch and goes on with the next", async () => {
    let calls = 0;
    const b = new KeyedBatcher<number>(async () => {
      calls++;
      if (calls === 1) throw new Error("boom");
    }, 2);
    const results = await Promise.allSettled([1, 2, 3].map(i => b.submit("k", i)));
    expect(results.map(r => r.status)).toEqual(["rejected", "rejected", "fulfilled"]);
    expect(await b.submit("k", 4).then(() => "ok")).toBe("ok");
  });
});
