import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import { registerUser, type ApiClient, type Registered } from "../helpers/http";
import {
  NATS_URL,
  clusterDown,
  freePort,
  useCluster,
  waitUntil,
  type Gateway,
} from "../helpers/cluster";
import { joinProbe, setFaults, sleep } from "../helpers/resilience";
import { createToken } from "../helpers/tokens";
import type { Listing } from "../../lib/events/market";
import type { Collection, Nft } from "../../lib/events/nfts";

/**
 * Every node serves Prometheus metrics on its METRICS_PORT. After a scenario driven over
 * the REST API (tokens, transfers, NFTs, a sale, a launch), each node's /metrics shows its
 * domain counters moved by exactly what happened, counted where the change was made; and a
 * circuit breaker opened by injected faults shows on the node that called.
 */

/** One sample of a Prometheus text exposition. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

type Labels = Record<string, string>;
/** The sum of the series matching a name and labels (0: none), and whether there is one. */
type Scrape = ((name: string, labels?: Labels) => number) & {
  has(name: string, labels?: Labels): boolean;
};

/** Reads a node's /metrics. */
async function scrape(port: number): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  const samples = parseExposition(await res.text());
  const matching = (name: string, labels: Labels = {}) =>
    samples.filter(
      s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
  const sum = (name: string, labels?: Labels) =>
    matching(name, labels).reduce((total, s) => total + s.value, 0);
  return Object.assign(sum, {
    has: (name: string, labels?: Labels) => matching(name, labels).length > 0,
  });
}

const NODES = ["users", "tokens", "catalog", "nfts", "market", "sagas", "dex", "marketing"];

describe.skipIf(clusterDown())("metrics of every node, scraped after a scenario", () => {
  const cluster = useCluster("metrics", {
    env: {
      CHANNELS_URL: NATS_URL,
      RATE_LIMIT_MAX: "0",
      FAULTS_CONTROL: "true",
      // Nine nodes on two cores: a register's scrypt may take longer than the default 3 s here.
      REQUEST_TIMEOUT: "10000",
    },
  });
  const ports: Record<string, number> = {};
  let gateway: Gateway;
  let probe: ServiceBroker;
  let c: ApiClient;
  let ann: Registered;
  let bob: Registered;
  let cat: Registered;

  beforeAll(async () => {
    for (const name of [...NODES, "gateway"]) ports[name] = await freePort();
    const started = await Promise.all([
      ...NODES.map(name =>
        cluster.node({ name, services: [name], env: { METRICS_PORT: String(ports[name]) } }),
      ),
      cluster.gateway({
        env: {
          METRICS_PORT: String(ports.gateway),
          READY_SERVICES: NODES.join(","),
          // A breaker that opens after a few failures, and half-opens soon.
          CB_MIN_REQUESTS: "4",
          CB_HALF_OPEN_MS: "2000",
        },
      }),
    ]);
    gateway = started[started.length - 1] as Gateway;
    c = gateway.client;
    probe = await joinProbe(cluster);
    // One at a time: each is a scrypt hash, and two cores run nine nodes here.
    ann = await registerUser(c, "ann");
    bob = await registerUser(c, "bob");
    cat = await registerUser(c, "cat");
  });

  it("counts each change once, on the node that made it", async () => {
    const before = Object.fromEntries(
      await Promise.all(NODES.map(async n => [n, await scrape(ports[n])] as const)),
    );

    // Two tokens: A with 2 decimals for transfers, B with none to pay for an NFT.
    const a = await createToken(c, ann.token, { decimals: 2, initialSupply: "1000000" });
    const b = await createToken(c, ann.token, { decimals: 0, initialSupply: "1000" });
    const amounts = [100, 250, 5, 1000, 45]; // 14.00 A in all
    for (const amount of amounts) {
      const res = await c.post(
        `/api/tokens/${a.id}/transfers`,
        { to: bob.id, amount: String(amount) },
        { token: ann.token },
      );
      expect(res.status, res.text).toBe(201);
    }
    const funded = await c.post(
      `/api/tokens/${b.id}/transfers`,
      { to: cat.id, amount: "500" },
      { token: ann.token },
    );
    expect(funded.status, funded.text).toBe(201);

    // A collection with a 10 % royalty, two NFTs minted to bob; bob sells one to cat for 100 B.
    const col = await c.post<Collection>(
      "/api/collections",
      { name: "Metered", symbol: "MTR", royaltyBps: 1000 },
      { token: ann.token },
    );
    expect(col.status, col.text).toBe(201);
    const nfts: Nft[] = [];
    for (const name of ["one", "two"]) {
      const res = await c.post<Nft>(
        `/api/collections/${col.body.id}/nfts`,
        { to: bob.id, metadata: { name } },
        { token: ann.token },
      );
      expect(res.status, res.text).toBe(201);
      nfts.push(res.body);
    }
    const listing = await c.post<Listing>(
      "/api/market/listings",
      { nftId: nfts[0].id, priceTokenId: b.id, price: "100" },
      { token: bob.token },
    );
    expect(listing.status, listing.text).toBe(201);
    const bought = await c.post(`/api/market/listings/${listing.body.id}/buy`, undefined, {
      token: cat.token,
    });
    expect(bought.status, bought.text).toBe(201); // 90 B to bob, 10 B royalty to ann

    // A launch: a third token, 250000 of it into its pool, a campaign.
    const launch = await c.post<{ id: string; state: string; result: { token: { id: string } } }>(
      "/api/launches",
      {
        token: { name: "Launched", symbol: "LNCHM", decimals: 0, initialSupply: "1000000" },
        liquidity: { amount: "250000" },
      },
      { token: ann.token },
    );
    expect(launch.status, launch.text).toBe(201);
    expect(launch.body.state).toBe("completed");
    const l = launch.body.result.token.id;

    /** What each node must show moved, by [node, metric, labels]. */
    const expected: Array<[string, string, Record<string, string>, number]> = [
      ["tokens", "mintmesh_tokens_created_total", {}, 3],
      ["tokens", "mintmesh_transfers_total", { token: a.id }, amounts.length],
      ["tokens", "mintmesh_transfers_volume_total", { token: a.id }, 14],
      // B: the funding, then the sale: 100 into escrow, 90 to bob and 10 to ann out of it.
      ["tokens", "mintmesh_transfers_total", { token: b.id }, 4],
      ["tokens", "mintmesh_transfers_volume_total", { token: b.id }, 700],
      ["tokens", "mintmesh_transfers_total", { token: l }, 1],
      ["tokens", "mintmesh_transfers_volume_total", { token: l }, 250000],
      ["nfts", "mintmesh_nfts_minted_total", {}, 2],
      ["market", "mintmesh_sales_total", {}, 1],
      ["market", "mintmesh_sales_volume_total", { currency: b.id }, 100],
      ["sagas", "mintmesh_sagas_total", { type: "purchase", outcome: "completed" }, 1],
      ["sagas", "mintmesh_sagas_total", { type: "launch", outcome: "completed" }, 1],
      ["sagas", "mintmesh_sagas_total", { outcome: "compensated" }, 0],
      // Nothing is counted where the change was not made.
      ["catalog", "mintmesh_transfers_total", {}, 0],
      ["nfts", "mintmesh_tokens_created_total", {}, 0],
    ];
    const key = ([node, name, labels]: (typeof expected)[number]) =>
      `${node} ${name}${JSON.stringify(labels)}`;
    const moved = async () => {
      const now = Object.fromEntries(
        await Promise.all(NODES.map(async n => [n, await scrape(ports[n])] as const)),
      );
      return Object.fromEntries(
        expected.map(e => [key(e), now[e[0]](e[1], e[2]) - before[e[0]](e[1], e[2])]),
      );
    };
    const want = Object.fromEntries(expected.map(e => [key(e), e[3]]));
    // Some move after the answer (a saga's end, a volume once decimals are known): wait,
    // then look again a little later, so a count that goes on past its mark shows too.
    await waitUntil(
      async () => JSON.stringify(await moved()) === JSON.stringify(want),
      20_000,
      250,
    );
    await sleep(1500);
    expect(await moved()).toEqual(want);

    // The catalog applied the events of the three tokens and their transfers: its lag moved.
    const lagCount = async () =>
      (await scrape(ports.catalog))("mintmesh_readmodel_lag_count", { consumer: "catalog" });
    const lagBefore = before.catalog("mintmesh_readmodel_lag_count", { consumer: "catalog" });
    await waitUntil(async () => (await lagCount()) - lagBefore >= 3 + amounts.length + 3 + 1);
    const catalog = await scrape(ports.catalog);
    expect(catalog("mintmesh_readmodel_lag_last", { consumer: "catalog" })).toBeGreaterThanOrEqual(
      0,
    );
    expect(catalog("mintmesh_readmodel_lag_bucket", { consumer: "catalog", le: "+Inf" })).toBe(
      await lagCount(),
    );

    // Every outbox has sent what it was given.
    for (const node of ["tokens", "nfts", "market", "sagas", "marketing"]) {
      await waitUntil(async () => {
        const s = await scrape(ports[node]);
        // The gauge is there (a missing series would read 0 too) and at 0.
        const labels = { service: node };
        return (
          s.has("mintmesh_outbox_backlog", labels) && s("mintmesh_outbox_backlog", labels) === 0
        );
      });
    }

    // The bulkhead's gauges, mirrored from Moleculer's: transfers ran and none is left.
    const tokens = await scrape(ports.tokens);
    expect(tokens("mintmesh_bulkhead_active", { action: "tokens.transfer" })).toBe(0);
    expect(tokens("mintmesh_bulkhead_queue", { action: "tokens.transfer" })).toBe(0);
    // Moleculer's own metrics stay on beside them.
    expect(tokens("moleculer_request_total", { action: "tokens.transfer" })).toBeGreaterThanOrEqual(
      amounts.length,
    );

    // The same through the built-in action the /ops page asks every node.
    const list = await probe.call<
      Array<{ name: string; values: Array<{ labels: Record<string, string>; value: number }> }>,
      { includes: string[] }
    >("$node.metrics", { includes: ["mintmesh.**"] }, { nodeID: cluster.nodeId("tokens") });
    const created = list.find(m => m.name === "mintmesh.tokens.created.total");
    expect(created?.values[0].value).toBe(before.tokens("mintmesh_tokens_created_total") + 3);
  });

  it("shows a breaker opened by faults on the node that called, and its changes", async () => {
    const usersId = cluster.nodeId("users");
    const labels = { action: "users.get", target: usersId };
    await setFaults(probe, usersId, "users.get:abort=503:retryable=false");
    let n = 0;
    await waitUntil(
      async () => {
        await c.get(`/api/users/missing-${n++}`);
        return (await scrape(ports.gateway))("mintmesh_breaker_open", labels) === 1;
      },
      20_000,
      50,
    );
    let gw = await scrape(ports.gateway);
    expect(gw("mintmesh_breaker_changes_total", { ...labels, state: "open" })).toBe(1);
    // Counted by the caller only, though Moleculer broadcasts the change to every node.
    expect((await scrape(ports.users))("mintmesh_breaker_changes_total")).toBe(0);

    // Healthy again: after CB_HALF_OPEN_MS a trial call succeeds and the breaker closes.
    await setFaults(probe, usersId, "");
    await waitUntil(async () => (await c.get(`/api/users/${bob.id}`)).status === 200, 15_000, 200);
    gw = await scrape(ports.gateway);
    expect(gw("mintmesh_breaker_open", labels)).toBe(0);
    expect(gw("mintmesh_breaker_changes_total", { ...labels, state: "half-open" })).toBe(1);
    expect(gw("mintmesh_breaker_changes_total", { ...labels, state: "closed" })).toBe(1);
  });
});
