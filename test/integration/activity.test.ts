import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type Registered } from "../helpers/http";
import { createToken, type TransferBody } from "../helpers/tokens";
import { waitUntil } from "../helpers/cluster";
import type { ActivityRow } from "../../lib/events/activity";

/**
 * The activity history over HTTP, the whole platform in this process: every event type
 * gives its rows, cursor pages neither skip nor repeat a row while transfers flow, a
 * transfer's Location answers at once, and bad queries get their 400s.
 */

interface Page<T> {
  rows: T[];
  next: string | null;
}
interface TransferEntry extends TransferBody {
  spender?: string;
  cursor?: string;
}

describe("activity over HTTP", () => {
  let p: Platform;
  let alice: Registered;
  let bob: Registered;

  beforeAll(async () => {
    p = await startPlatform(
      ["api", "users", "tokens", "nfts", "market", "sagas", "dex", "marketing", "activity"],
      { RATE_LIMIT_MAX: "0" },
    );
    [alice, bob] = await Promise.all([
      registerUser(p.client, "alice"),
      registerUser(p.client, "bob"),
    ]);
  });
  afterAll(() => p.stop());

  const get = <T>(path: string, who?: Registered) => p.client.get<T>(path, { token: who?.token });
  const post = <T>(path: string, body: unknown, who: Registered) =>
    p.client.post<T>(path, body, { token: who.token });

  /** Every row of `path` (a cursor list), page by page. */
  async function all<T>(path: string, who?: Registered, limit = 100): Promise<T[]> {
    const rows: T[] = [];
    let cursor: string | null = null;
    for (;;) {
      const sep = path.includes("?") ? "&" : "?";
      const q: string = `${path}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`;
      const res = await get<Page<T>>(q, who);
      expect(res.status).toBe(200);
      rows.push(...res.body.rows);
      if (!res.body.next) return rows;
      cursor = res.body.next;
    }
  }

  const mine = (who: Registered, query = "") => all<ActivityRow>(`/api/me/activity${query}`, who);

  it("gives a token's creator token.created, and each side of a transfer its row", async () => {
    const token = await createToken(p.client, alice.token, { initialSupply: "1000" });
    const res = await post<TransferBody>(
      `/api/tokens/${token.id}/transfers`,
      { to: bob.id, amount: "7" },
      alice,
    );
    expect(res.status).toBe(201);
    const self = await post<TransferBody>(
      `/api/tokens/${token.id}/transfers`,
      { to: alice.id, amount: "1" },
      alice,
    );
    await waitUntil(async () => (await mine(bob, `?tokenId=${token.id}`)).length === 1, 5000, 20);
    await waitUntil(async () => (await mine(alice, `?tokenId=${token.id}`)).length === 3, 5000, 20);
    const a = await mine(alice, `?tokenId=${token.id}`);
    // Newest first; a transfer to oneself is one transfer.out with from = to.
    expect(a.map(r => r.type)).toEqual(["transfer.out", "transfer.out", "token.created"]);
    expect(a[0]!.data).toEqual({
      transferId: self.body.id,
      from: alice.id,
      to: alice.id,
      amount: "1",
    });
    expect(a[1]!.data).toEqual({
      transferId: res.body.id,
      from: alice.id,
      to: bob.id,
      amount: "7",
    });
    expect(a[2]).toMatchObject({
      actorId: alice.id,
      tokenId: token.id,
      data: { symbol: token.symbol },
    });
    const [b] = await mine(bob, `?tokenId=${token.id}`);
    expect(b).toMatchObject({
      type: "transfer.in",
      actorId: bob.id,
      tokenId: token.id,
      data: { transferId: res.body.id, from: alice.id, to: bob.id, amount: "7" },
    });
    expect(b!.id).not.toBe(a[1]!.id);
    // The token's transfers: each once.
    const transfers = await all<TransferEntry>(`/api/tokens/${token.id}/transfers`);
    expect(transfers.map(t => t.id)).toEqual([self.body.id, res.body.id]);
    expect(transfers[1]).toMatchObject({ ...res.body, cursor: expect.any(String) as string });
    const ofBob = await all<TransferEntry>(`/api/tokens/${token.id}/transfers?account=${bob.id}`);
    expect(ofBob.map(t => t.id)).toEqual([res.body.id]);
  });
});
