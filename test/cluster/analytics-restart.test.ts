import { beforeAll, describe, expect, it } from "vitest";
import type { AnalyticsSummary } from "../../lib/read-models/read-model";
import {
  NATS_URL,
  clusterDown,
  useCluster,
  waitUntil,
  type Gateway,
  type NodeProcess,
} from "../helpers/cluster";
import { registerUser, type ApiClient, type Registered } from "../helpers/http";
import { createToken, type TokenBody } from "../helpers/tokens";

/**
 * Analytics as its own process, a durable consumer group on NATS JetStream. It is
 * stopped (SIGKILL, then SIGTERM), transfers happen while it is away, and when it comes
 * back on the same data it counts exactly those transfers: none lost, none twice.
 */

describe.skipIf(clusterDown())("analytics counts exactly what happened while it was down", () => {
  const cluster = useCluster("anrs");
  const dataDir = cluster.tempDir("analytics");
  let core: Gateway;
  let analytics: NodeProcess | undefined;
  let client: ApiClient;
  let alice: Registered;
  let bob: Registered;
  let coin: TokenBody;

  const startAnalytics = () =>
    cluster.node({
      name: "analytics",
      services: ["analytics"],
      env: { CHANNELS_URL: NATS_URL, DATA_DIR: dataDir, ANALYTICS_CACHE_TTL: "0" },
    });

  beforeAll(async () => {
    [analytics, core] = await Promise.all([
      startAnalytics(),
      cluster.gateway({
        name: "core",
        services: ["users", "tokens", "catalog"],
        env: { CHANNELS_URL: NATS_URL, READY_SERVICES: "users,tokens,catalog,analytics" },
      }),
    ]);
    client = core.client;
    [alice, bob] = await Promise.all([registerUser(client, "alice"), registerUser(client, "bob")]);
    coin = await createToken(client, alice.token, { initialSupply: "1000000" });
  });

  const summary = async (): Promise<AnalyticsSummary> => {
    const res = await client.get<AnalyticsSummary>("/api/analytics/summary", {
      token: alice.token,
    });
    if (res.status !== 200) throw new Error(`summary: ${res.status} ${res.text}`);
    return res.body;
  };

  async function transfers(amounts: number[]): Promise<void> {
    for (const amount of amounts) {
      const res = await client.post(
        `/api/tokens/${coin.id}/transfers`,
        { to: bob.id, amount: String(amount) },
        { token: alice.token },
      );
      expect(res.status).toBe(201);
    }
  }

  /** Waits for the counts to reach `transfers`, then checks they stay there. */
  async function expectSettled(expected: { transfers: number; volume: number }) {
    await waitUntil(async () => (await summary()).transfers >= expected.transfers, 60_000, 250);
    // Anything counted twice would show up here: redeliveries come back within the ack wait.
    await new Promise(r => setTimeout(r, 3000));
    const s = await summary();
    expect(s).toMatchObject({
      tokens: 1,
      transfers: expected.transfers,
      volumeByToken: { [coin.id]: String(expected.volume) },
    });
  }

  it("counts the transfers made before, during a SIGKILL and during a SIGTERM, each once", async () => {
    await transfers([1, 2, 3]);
    await expectSettled({ transfers: 3, volume: 6 });

    for (const signal of ["SIGKILL", "SIGTERM"] as const) {
      const before = await summary();
      await analytics!.kill(signal);

      const amounts = [10, 20, 30, 40, 50];
      await transfers(amounts);

      analytics = await startAnalytics();
      await core.ready();
      await expectSettled({
        transfers: before.transfers + amounts.length,
        volume: Number(before.volumeByToken[coin.id]) + 150,
      });
    }
  });
});
