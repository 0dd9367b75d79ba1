import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import type { ActivityRow } from "../../lib/events/activity";
import {
  NATS_URL,
  clusterDown,
  useCluster,
  waitUntil,
  type Gateway,
  type NodeProcess,
} from "../helpers/cluster";
import { registerUser, type Registered } from "../helpers/http";
import { createToken } from "../helpers/tokens";
import { openSse, type SseStream } from "../helpers/sse";

/**
 * The live stream on real processes over NATS and JetStream: two gateways, the activity
 * service in a process of its own (SQLite on disk), users and tokens in another. A client
 * streams its rows from gateway A while transfers flow through gateway B; gateway A is
 * SIGKILLed and the client resumes on B with Last-Event-ID; then the activity node is
 * SIGKILLed and started again on its data. At the end what the client received equals
 * every row of its account in activity.list order: no gap, no repeat.
 */

describe.skipIf(clusterDown())(
  "the live stream across SIGKILLs of a gateway and of activity",
  () => {
    const cluster = useCluster("live", {
      env: {
        CHANNELS_URL: NATS_URL,
        RATE_LIMIT_MAX: "0",
        LIVE_PING_MS: "500",
        LIVE_REREAD_MS: "1000",
      },
    });
    const dataDir = cluster.tempDir("activity");
    const gatewayEnv = { READY_SERVICES: "users,tokens,activity" };
    let a: Gateway;
    let b: Gateway;
    let activity: NodeProcess;
    let probe: ServiceBroker;
    let ann: Registered;
    let bob: Registered;
    let flowing = true;
    let flow: Promise<number> | undefined;
    const streams: SseStream[] = [];

    const startActivity = () =>
      cluster.node({ name: "activity", services: ["activity"], env: { DATA_DIR: dataDir } });

    beforeAll(async () => {
      [activity, , a, b] = await Promise.all([
        startActivity(),
        cluster.node({ name: "core", services: ["users", "tokens"] }),
        cluster.gateway({ name: "gw-a", env: gatewayEnv }),
        cluster.gateway({ name: "gw-b", env: gatewayEnv }),
      ]);
      probe = await cluster.broker({ requestTimeout: 5000 });
      [ann, bob] = await Promise.all([
        registerUser(b.client, "ann"),
        registerUser(b.client, "bob"),
      ]);
    });
    afterAll(async () => {
      flowing = false;
      await flow;
      streams.forEach(s => s.close());
    });

    /** Transfers ann → bob through gateway B until told to stop: how many succeeded. */
    async function transfersFlow(tokenId: string): Promise<number> {
      let n = 0;
      while (flowing) {
        const res = await b.client.post(
          `/api/tokens/${tokenId}/transfers`,
          { to: bob.id, amount: "1" },
          { token: ann.token },
        );
        if (res.status === 201) n++;
        await new Promise(r => setTimeout(r, 40));
      }
      return n;
    }

    async function history(): Promise<ActivityRow[]> {
      const rows: ActivityRow[] = [];
      let cursor: string | undefined;
      for (;;) {
        const page = await probe.call<{ rows: ActivityRow[]; next: string | null }, object>(
          "activity.list",
          { actorId: ann.id, order: "asc", limit: 100, ...(cursor ? { cursor } : {}) },
        );
        rows.push(...page.rows);
        if (!page.next) return rows;
        cursor = page.next;
      }
    }

    async function stream(g: Gateway, lastId?: string): Promise<SseStream> {
      const s = await openSse(`${g.client.baseUrl}/api/me/events`, {
        authorization: `Bearer ${ann.token}`,
        ...(lastId ? { "last-event-id": lastId } : {}),
      });
      expect(s.status).toBe(200);
      streams.push(s);
      return s;
    }

    const received = () =>
      streams.flatMap(s => s.parser.events.map(e => JSON.parse(e.data) as ActivityRow));
    const lastId = () => received().at(-1)?.cursor;

    it("gives every row once, in order, across both SIGKILLs", { timeout: 150_000 }, async () => {
      const first = await stream(a);
      const token = await createToken(b.client, ann.token, { initialSupply: "1000000" });
      flow = transfersFlow(token.id);
      await first.until(p => p.events.length >= 20, 20_000);

      // Gateway A dies mid-stream; the client resumes on B after the last row it got.
      await a.node.kill("SIGKILL");
      await first.ended;
      const onB = await stream(b, lastId());
      const atKill = received().length;
      await onB.until(p => p.events.length >= 20, 20_000);
      expect(received().length).toBeGreaterThan(atKill);

      // The activity node dies while transfers go on, and comes back on its data.
      await activity.kill("SIGKILL");
      await new Promise(r => setTimeout(r, 1500));
      activity = await startActivity();
      const atRestart = received().length;
      await waitUntil(() => received().length >= atRestart + 20, 60_000, 100);

      flowing = false;
      const made = await flow;
      // Every transfer's row reaches activity (JetStream), then the stream.
      await waitUntil(async () => (await history()).length === made + 1, 60_000, 250);
      const all = await history();
      await waitUntil(() => received().length >= all.length, 30_000, 100);
      await new Promise(r => setTimeout(r, 1500)); // a repeat would show up by now

      const got = received();
      expect(got.length).toBe(all.length);
      expect(got.map(r => r.cursor)).toEqual(all.map(r => r.cursor));
      expect(got).toEqual(all);
      expect(all[0].type).toBe("token.created");
      // The first stream ended at a row boundary when its gateway died: nothing half-written.
      expect(
        first.parser.events.every(e => e.id === (JSON.parse(e.data) as ActivityRow).cursor),
      ).toBe(true);
    });
  },
);
