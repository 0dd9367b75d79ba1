import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DomainEvent } from "../../lib/events/domain";
import type { CatalogToken } from "../../lib/read-models/read-model";
import type { Service, ServiceBroker } from "moleculer";
import type { DbVars } from "../../mixins/db.mixin";
import type { Database } from "../../lib/store/store";
import { failInTransaction } from "../helpers/stores";
import { TokenScript, sendAll, sendToChannel } from "../helpers/channels";
import { waitUntil } from "../helpers/cluster";
import { startPlatform, type Platform } from "../helpers/platform";

/**
 * The catalog read model behind GET /api/tokens, fed by events sent on the real
 * in-memory channel adapter exactly as the write model sends them, duplicates and
 * reorderings included.
 */

type List = { rows: CatalogToken[]; total: number };
/** The catalog's database, where a test makes a batch's transaction crash. */
function catalogDatabase(broker: ServiceBroker): Database {
  return (broker.getLocalService("catalog") as Service & DbVars).database;
}

const tag = (): string => randomBytes(3).toString("hex").toUpperCase();

describe("catalog: GET /api/tokens from the read model", () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform(["api", "catalog"], { READY_SERVICES: "catalog" });
  });
  afterAll(() => p?.stop());

  const getToken = (id: string) => p.client.get<CatalogToken>(`/api/tokens/${id}`);
  const list = (query: string) => p.client.get<List>(`/api/tokens?${query}`);

  /** Polls GET /api/tokens/:id until `ok` holds, then returns the body. */
  async function tokenWhen(id: string, ok: (t: CatalogToken) => boolean): Promise<CatalogToken> {
    let last: CatalogToken | undefined;
    await waitUntil(async () => {
      const res = await getToken(id);
      last = res.body;
      return res.status === 200 && ok(res.body);
    }, 5000).catch(err => {
      throw new Error(`${String(err)}; last: ${JSON.stringify(last)}`);
    });
    return last!;
  }

  it("shows a created token with its stats on GET /api/tokens/:id and in the list", async () => {
    const creator = `usr_${tag()}`;
    const s = new TokenScript({ creatorId: creator, name: "Created Coin", symbol: "CRT" });
    await sendToChannel(p.broker, s.created());

    const token = await tokenWhen(s.token.id, () => true);
    expect(token).toEqual({
      ...s.token,
      featured: false,
      stats: { holders: 1, transfers: 0 },
    });

    const res = await list(`creator=${creator}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ rows: [token], total: 1 });
  });

  it("counts holders and transfers exactly when every event arrives twice and in reverse", async () => {
    const s = new TokenScript({ creatorId: "alice", totalSupply: "1000" });
    const created = s.created();
    const transfers = [
      s.transfer("alice", "bob", "100"),
      s.transfer("alice", "carol", "50"),
      s.transfer("bob", "alice", "100"), // bob is back to 0: no longer a holder
      s.transfer("carol", "carol", "0"), // to oneself: recorded, changes nothing
    ];
    // Newest first: each balance's older versions arrive after its newest one.
    await sendAll(p.broker, [...transfers].reverse());
    await sendAll(p.broker, [created, ...transfers, created]);

    const token = await tokenWhen(s.token.id, t => t.stats.transfers === 4);
    expect(token.stats).toEqual({ holders: 2, transfers: 4 });
    expect(s.holders()).toBe(2);

    // Redelivered again later: still the same numbers.
    await sendAll(p.broker, [...transfers, created]);
    const probe = new TokenScript({ creatorId: "probe" });
    await sendToChannel(p.broker, probe.created());
    await tokenWhen(probe.token.id, () => true);
    expect((await getToken(s.token.id)).body.stats).toEqual({ holders: 2, transfers: 4 });
  });

  it("keeps a transfer that overtook tokens.created, and shows the token only once created", async () => {
    const s = new TokenScript({ creatorId: "dave", totalSupply: "10" });
    const created = s.created();
    const moved = s.transfer("dave", "erin", "4");
    await sendToChannel(p.broker, moved);

    const early = await list(`creator=dave`);
    expect(early.body.rows.map(r => r.id)).not.toContain(s.token.id);

    await sendToChannel(p.broker, created);
    const token = await tokenWhen(s.token.id, t => t.stats.transfers === 1);
    expect(token.stats).toEqual({ holders: 2, transfers: 1 });
  });

  it("serves fresh data right after tokens.updated although reads are cached", async () => {
    const t = tag();
    const s = new TokenScript({ creatorId: `usr_${t}`, name: `Old${t}`, symbol: `O${t}` });
    await sendToChannel(p.broker, s.created());
    await tokenWhen(s.token.id, () => true);
    // Warm both caches.
    expect((await getToken(s.token.id)).body.name).toBe(`Old${t}`);
    expect((await list(`q=old${t}`)).body.total).toBe(1);

    await sendToChannel(
      p.broker,
      s.updated({ name: `New${t}`, metadata: { description: "renamed" } }),
    );
    // The cache TTL is 30 s and this waits at most 5 s: only the event's clean can pass it.
    const token = await tokenWhen(s.token.id, x => x.name === `New${t}`);
    expect(token.metadata).toEqual({ description: "renamed" });
    await waitUntil(async () => (await list(`q=new${t}`)).body.total === 1, 5000);
    // List entries are cleaned at most once per CATALOG_CLEAN_WINDOW_MS: soon, not at once.
    await waitUntil(async () => (await list(`q=old${t}`)).body.total === 0, 5000);
    expect((await list(`q=old${t}`)).body.total).toBe(0);
  });

  it("ignores an older tokens.updated that arrives after a newer one", async () => {
    const s = new TokenScript({ creatorId: "frank", name: "First" });
    const created = s.created();
    const older = s.updated({ name: "Second" });
    const newer = s.updated({ name: "Third" });
    await sendAll(p.broker, [newer, created, older]);
    await tokenWhen(s.token.id, () => true);
    const probe = new TokenScript({ creatorId: "probe" });
    await sendToChannel(p.broker, probe.created());
    await tokenWhen(probe.token.id, () => true);
    expect((await getToken(s.token.id)).body.name).toBe("Third");
  });

  it("drops a deleted token from GET and the list, and a late event does not bring it back", async () => {
    const creator = `usr_${tag()}`;
    const s = new TokenScript({ creatorId: creator });
    const created = s.created();
    await sendToChannel(p.broker, created);
    await tokenWhen(s.token.id, () => true);

    await sendToChannel(p.broker, s.deleted());
    await waitUntil(async () => (await getToken(s.token.id)).status === 404, 5000);
    const gone = await getToken(s.token.id);
    expect(gone.body).toMatchObject({ error: { type: "NOT_FOUND" } });
    expect((await list(`creator=${creator}`)).body).toEqual({ rows: [], total: 0 });

    await sendAll(p.broker, [created, s.transfer(creator, "x", "1")]);
    const probe = new TokenScript({ creatorId: "probe" });
    await sendToChannel(p.broker, probe.created());
    await tokenWhen(probe.token.id, () => true);
    expect((await getToken(s.token.id)).status).toBe(404);
    expect((await list(`creator=${creator}`)).body.total).toBe(0);
  });

  it("applies nothing of a transfer whose batch crashed, and its redelivery once", async () => {
    const s = new TokenScript({ creatorId: "gina", totalSupply: "100" });
    await sendToChannel(p.broker, s.created());
    await tokenWhen(s.token.id, () => true);
    const first = s.transfer("gina", "hank", "10");
    const second = s.transfer("hank", "ivy", "10"); // hank holds nothing again
    // Dies at the record of its eventId, after the view and the balances were written.
    const crash = failInTransaction(catalogDatabase(p.broker), "applied", "insertMany");
    await sendToChannel(p.broker, first);
    await waitUntil(async () => crash.fired(), 5000);
    expect((await getToken(s.token.id)).body.stats).toEqual({ holders: 1, transfers: 0 });

    await sendAll(p.broker, [first, second, first, second]);
    const token = await tokenWhen(s.token.id, t => t.stats.transfers >= 2);
    expect(token.stats).toEqual({ holders: 2, transfers: 2 });
    expect(s.holders()).toBe(2);
  });

  describe("list query", () => {
    const t = tag();
    const creator = `usr_${t}`;
    let alpha: TokenScript; // name prefix match
    let beta: TokenScript; // symbol prefix match, most holders
    let gamma: TokenScript; // matches neither, most transfers, newest
    const base = Date.parse("2030-01-01T00:00:00.000Z");

    beforeAll(async () => {
      const at = (i: number) => new Date(base + i * 1000).toISOString();
      alpha = new TokenScript({
        creatorId: creator,
        name: `Q${t}alpha Coin`,
        symbol: `A${t}`,
        createdAt: at(0),
      });
      beta = new TokenScript({
        creatorId: creator,
        name: `Beta ${t}`,
        symbol: `Q${t}B`,
        createdAt: at(1),
      });
      gamma = new TokenScript({
        creatorId: creator,
        name: `Gamma x q${t}`,
        symbol: `G${t}`,
        createdAt: at(2),
      });
      const other = new TokenScript({ creatorId: `other_${t}`, name: `Q${t}other` });
      const events: DomainEvent[] = [
        alpha.created(),
        beta.created(),
        gamma.created(),
        other.created(),
      ];
      events.push(alpha.transfer(creator, "a1", "1"));
      for (const to of ["b1", "b2", "b3"]) events.push(beta.transfer(creator, to, "1"));
      for (let i = 0; i < 5; i++) events.push(gamma.transfer(creator, creator, "1"));
      await sendAll(p.broker, events);
      await waitUntil(async () => {
        const res = await list(`creator=${creator}&sort=transfers`);
        return res.body.rows?.[0]?.stats.transfers === 5 && res.body.rows[1]?.stats.transfers === 3;
      }, 5000);
    });

    const ids = (res: { body: List }) => res.body.rows.map(r => r.id);

    it("?q= matches a case-insensitive prefix of the name or the symbol, not a substring", async () => {
      const res = await list(`q=q${t.toLowerCase()}&creator=${creator}`);
      expect(res.status).toBe(200);
      expect(new Set(ids(res))).toEqual(new Set([alpha.token.id, beta.token.id]));
      expect(res.body.total).toBe(2);

      const other = await list(`q=Q${t}`);
      expect(other.body.total).toBe(3); // the other creator's token too
      expect((await list(`q=alpha`)).body.rows.map(r => r.id)).not.toContain(alpha.token.id);
    });

    it("?sort= orders by holders, transfers or newest first", async () => {
      expect(ids(await list(`creator=${creator}`))).toEqual([
        gamma.token.id,
        beta.token.id,
        alpha.token.id,
      ]);
      expect(ids(await list(`creator=${creator}&sort=holders`))).toEqual([
        beta.token.id,
        alpha.token.id,
        gamma.token.id,
      ]);
      const byTransfers = await list(`creator=${creator}&sort=transfers`);
      expect(ids(byTransfers)).toEqual([gamma.token.id, beta.token.id, alpha.token.id]);
      expect(byTransfers.body.rows.map(r => r.stats)).toEqual([
        { holders: 1, transfers: 5 },
        { holders: 4, transfers: 3 },
        { holders: 2, transfers: 1 },
      ]);
    });

    it("?featured=true lists tokens with at least 3 holders", async () => {
      const res = await list(`creator=${creator}&featured=true`);
      expect(ids(res)).toEqual([beta.token.id]);
      expect(res.body.rows[0].featured).toBe(true);
      expect(res.body.total).toBe(1);
    });

    it("pages with limit and offset and reports the total", async () => {
      const page = await list(`creator=${creator}&limit=2&offset=1`);
      expect(ids(page)).toEqual([beta.token.id, alpha.token.id]);
      expect(page.body.total).toBe(3);
      const last = await list(`creator=${creator}&limit=2&offset=2`);
      expect(ids(last)).toEqual([alpha.token.id]);
    });

    it.each([
      ["limit=0", "limit"],
      ["limit=101", "limit"],
      ["limit=ten", "limit"],
      ["offset=-1", "offset"],
      ["sort=name", "sort"],
      ["featured=maybe", "featured"],
    ])("answers 400 naming the field for %s", async (query, field) => {
      const res = await list(query);
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ error: { type: "VALIDATION_ERROR" } });
      const data = (res.body as unknown as { error: { data: Array<{ field: string }> } }).error
        .data;
      expect(data.map(d => d.field)).toContain(field);
    });
  });
});
