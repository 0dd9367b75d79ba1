import { describe, expect, it } from "vitest";
import type { AnalyticsSummary, CatalogToken } from "../../lib/read-models/read-model";
import type { Service } from "moleculer";
import type { DbMethods } from "../../mixins/db.mixin";
import { waitUntil } from "../helpers/cluster";
import type { Registered } from "../helpers/http";
import { usePlatform, useUsers } from "../helpers/platform";
import { createToken, uniqueSymbol, type TransferBody } from "../helpers/tokens";

/**
 * End to end through HTTP: the write model (tokens) publishes through its outbox, the
 * read models (catalog, analytics) consume, and the gateway serves both.
 */

type List = { rows: CatalogToken[]; total: number };

describe("tokens → events → catalog and analytics, over HTTP", () => {
  const p = usePlatform(["api", "users", "tokens", "catalog", "analytics"], {
    ANALYTICS_CACHE_TTL: "0",
  });
  const [alice, bob, carol] = useUsers(p, ["alice", "bob", "carol"]);

  const transfer = async (from: Registered, tokenId: string, to: string, amount: string) => {
    const res = await p.client.post<TransferBody>(
      `/api/tokens/${tokenId}/transfers`,
      { to, amount },
      { token: from.token },
    );
    expect(res.status).toBe(201);
    return res.body;
  };

  it("reads a token right after creating it, then its stats as transfers happen", async () => {
    const symbol = uniqueSymbol("E");
    const created = await createToken(p.client, alice.token, {
      name: "Everyday Euro",
      symbol,
      initialSupply: "1000",
    });

    // Read-after-write: from the view, or from tokens while the event is on its way.
    const first = await p.client.get<CatalogToken>(`/api/tokens/${created.id}`);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ ...created, stats: { holders: 1, transfers: 0 } });

    await transfer(alice, created.id, bob.id, "300");
    await transfer(alice, created.id, carol.id, "200");
    await transfer(bob, created.id, alice.id, "300"); // bob holds nothing again

    await waitUntil(async () => {
      const res = await p.client.get<CatalogToken>(`/api/tokens/${created.id}`);
      return res.body.stats?.transfers === 3;
    }, 5000);
    const view = await p.client.get<CatalogToken>(`/api/tokens/${created.id}`);
    expect(view.body).toEqual({
      ...created,
      featured: false,
      stats: { holders: 2, transfers: 3 },
    });

    const found = await p.client.get<List>(`/api/tokens?q=${symbol.toLowerCase()}`);
    expect(found.body).toEqual({ rows: [view.body], total: 1 });
    const mine = await p.client.get<List>(`/api/tokens?creator=${alice.id}&sort=transfers`);
    expect(mine.body.rows.map(r => r.id)).toContain(created.id);

    await waitUntil(async () => {
      const res = await p.client.get<AnalyticsSummary>("/api/analytics/summary", {
        token: alice.token,
      });
      return res.body.volumeByToken?.[created.id] === "800";
    }, 5000);
  });

  it("falls back to the write model for a token the catalog has not consumed yet", async () => {
    const created = await createToken(p.client, alice.token, { initialSupply: "5" });
    await waitUntil(
      async () =>
        (await p.client.get<List>(`/api/tokens?creator=${alice.id}`)).body.rows.some(
          r => r.id === created.id,
        ),
      5000,
    );
    // Forget the view and its cached answer, as if tokens.created were still in flight.
    const catalog = p.broker.getLocalService("catalog") as Service & DbMethods;
    await catalog.store("views").remove({ _id: created.id });
    await p.broker.cacher?.clean("catalog.**");

    const res = await p.client.get<CatalogToken>(`/api/tokens/${created.id}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ ...created, stats: { holders: 1, transfers: 0 } });
  });

  it("answers 404 NOT_FOUND for a token neither the catalog nor tokens knows", async () => {
    const res = await p.client.get(`/api/tokens/tok_doesnotexist`);
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ error: { type: "NOT_FOUND" } });
  });
});
