import { Errors, type ActionSchema } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import CatalogService from "../../../services/catalog.service";
import CatalogV2Service from "../../../services/catalog.v2.service";
import TokensService from "../../../services/tokens.service";
import type { Token } from "../../../lib/events/domain";
import type { CatalogToken } from "../../../lib/read-models/read-model";
import type { Meta } from "../../../lib/shared/context";
import { TokenScript, sendAll } from "../../helpers/channels";
import { waitUntil } from "../../helpers/cluster";
import { withSettings, inFlightOf, testBroker } from "../../helpers/read-models";

/**
 * The catalog service in a broker of its own, as the Moleculer TypeScript template tests
 * services: its actions called directly, events sent on the in-memory ("Fake") channels
 * adapter as the write model sends them, the real tokens service behind read-after-write.
 */

type List = { rows: CatalogToken[]; total: number };

describe("catalog service", () => {
  const broker = testBroker({ cacher: "Memory" });
  broker.createService(CatalogService);
  broker.createService(CatalogV2Service);
  broker.createService(TokensService);
  beforeAll(() => broker.start());
  afterAll(() => broker.stop());

  const get = (id: string) => broker.call<CatalogToken, { id: string }>("catalog.get", { id });
  const list = (params: object) => broker.call<List, object>("catalog.list", params);
  /** Polls catalog.get until `ok` holds (events are applied asynchronously). */
  const getWhen = (id: string, ok: (t: CatalogToken) => boolean) =>
    waitUntil(
      async () => {
        const t = await get(id);
        return ok(t) && t;
      },
      3000,
      10,
    );

  it("refuses bad params with a ValidationError naming the field", async () => {
    for (const [params, field] of [
      [{ limit: 0 }, "limit"],
      [{ limit: 101 }, "limit"],
      [{ offset: -1 }, "offset"],
      [{ sort: "name" }, "sort"],
      [{ featured: "maybe" }, "featured"],
      [{ q: "x".repeat(65) }, "q"],
    ] as const) {
      const err = await list(params).catch((e: unknown) => e);
      expect(err, field).toBeInstanceOf(Errors.ValidationError);
      expect((err as Errors.ValidationError).data, field).toEqual([
        expect.objectContaining({ field }),
      ]);
    }
    await expect(get("")).rejects.toBeInstanceOf(Errors.ValidationError);
  });

  it("answers a token not consumed yet from the write model, and 404 for one that does not exist", async () => {
    const meta: Meta = { user: { id: "usr_ann" } };
    const token = await broker.call<Token, object>(
      "tokens.create",
      { name: "Fresh", symbol: "FRSH", decimals: 0, initialSupply: "10" },
      { meta },
    );
    // Right after the write, whether or not tokens.created has arrived yet.
    expect(await get(token.id)).toEqual({
      ...token,
      featured: false,
      stats: { holders: 1, transfers: 0 },
    });
    await expect(get("tok_missing")).rejects.toMatchObject({ code: 404, type: "NOT_FOUND" });
  });

  it("builds stats from the events, exact when they repeat and arrive out of order", async () => {
    const s = new TokenScript({ creatorId: "alice", totalSupply: "1000", symbol: "EXA" });
    const created = s.created();
    const moves = [
      s.transfer("alice", "bob", "100"),
      s.transfer("alice", "carol", "50"),
      s.transfer("bob", "dave", "100"), // bob holds nothing again
    ];
    await sendAll(broker, [...moves].reverse());
    await sendAll(broker, [created, ...moves, created]);
    const token = await getWhen(s.token.id, t => t.stats.transfers === 3);
    expect(token).toEqual({ ...s.token, featured: true, stats: { holders: 3, transfers: 3 } });

    const found = await list({ q: "exa", creator: "alice", featured: "true" });
    expect(found).toEqual({ rows: [token], total: 1 });
  });

  it("lists with defaults and drops params it does not know", async () => {
    const res = await list({ creator: "alice", unknown: 1 });
    expect(res.total).toBe(1);
    expect(await list({ creator: "alice", sort: "createdAt", limit: 20, offset: 0 })).toEqual(res);
  });

  it("serves fresh reads right after an event although reads are cached", async () => {
    const s = new TokenScript({ creatorId: "erin", name: "Old" });
    await sendAll(broker, [s.created()]);
    await getWhen(s.token.id, () => true);
    expect((await list({ creator: "erin" })).rows[0].name).toBe("Old"); // now cached
    await sendAll(broker, [s.updated({ name: "New" })]);
    await getWhen(s.token.id, t => t.name === "New");
    await waitUntil(async () => (await list({ creator: "erin" })).rows[0].name === "New", 3000, 10);
  });

  it("answers the same through v2, marked with its version and checked with v1's params", async () => {
    const v1 = await list({ creator: "alice" });
    expect(await broker.call("v2.catalog.list", { creator: "alice" })).toEqual({
      ...v1,
      catalogVersion: 2,
    });
    const id = v1.rows[0].id;
    expect(await broker.call("v2.catalog.get", { id })).toEqual({
      ...(await get(id)),
      catalogVersion: 2,
    });
    await expect(broker.call("v2.catalog.list", { limit: 0 })).rejects.toBeInstanceOf(
      Errors.ValidationError,
    );
  });

  it("forgets a deleted token for good", async () => {
    const s = new TokenScript({ creatorId: "frank" });
    const created = s.created();
    await sendAll(broker, [created, s.deleted(), created, s.transfer("frank", "x", "1")]);
    await waitUntil(
      () =>
        get(s.token.id).then(
          () => false,
          () => true,
        ),
      3000,
      10,
    );
    await expect(get(s.token.id)).rejects.toMatchObject({ type: "NOT_FOUND" });
    expect(await list({ creator: "frank" })).toEqual({ rows: [], total: 0 });
  });
});

describe("catalog service settings", () => {
  const { broker, svc } = withSettings(
    CatalogService,
    {
      featuredMinHolders: 1,
      cacheTtl: 5,
      readModel: { group: "catalog-b", maxInFlight: { "tokens.transferred": 9 } },
    },
    { cacher: "Memory" },
  );

  it("consumes in the group and with the in-flight count of its settings", () => {
    expect(inFlightOf(broker, "catalog", "tokens.transferred", "catalog-b")).toBe(9);
    expect(inFlightOf(broker, "catalog", "tokens.created", "catalog")).toBeUndefined();
  });

  it("caches reads for the TTL of its settings", () => {
    const actions = svc.schema.actions as Record<string, ActionSchema>;
    expect(actions.list.cache).toMatchObject({ ttl: 5 });
    expect(actions.get.cache).toMatchObject({ ttl: 5 });
  });

  it("features tokens from the holder count of its settings", async () => {
    const s = new TokenScript({ creatorId: "gus" });
    await sendAll(broker, [s.created()]);
    const token = await waitUntil(
      () => broker.call<CatalogToken, object>("catalog.get", { id: s.token.id }).catch(() => null),
      3000,
      10,
    );
    expect(token).toMatchObject({ featured: true, stats: { holders: 1, transfers: 0 } });
  });
});
