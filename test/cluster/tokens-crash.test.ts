import { beforeAll, describe, expect, it } from "vitest";
import type { Context, ServiceBroker } from "moleculer";
import { registerUser, type ApiClient, type Registered } from "../helpers/http";
import { jetStreamChannels } from "../helpers/channels";
import { NATS_URL, clusterDown, useCluster, waitUntil } from "../helpers/cluster";
import type { Gateway, NodeProcess } from "../helpers/cluster";
import { allHolders, balanceOf, createToken, startClients, sumAmounts } from "../helpers/tokens";
import { transferPair } from "../helpers/tokens";
import type { TransferBody } from "../helpers/tokens";
import type { DomainEvent, TokenTransferred } from "../../lib/events/domain";

/**
 * The tokens process dies (SIGKILL) in the middle of a burst of transfers and comes
 * back on the same NeDB files. Afterwards every transfer a client saw acknowledged is
 * there exactly once, the supply equals the sum of balances, the events of all of
 * them reach a consumer over NATS JetStream (at least once), and the catalog (a separate
 * process, reading those events) catches up with exact stats.
 */

const ACCOUNTS = 4;
const EACH = 1000n;

interface Sent {
  key: string;
  from: number;
  to: number;
  amount: bigint;
  status: number;
  body?: TransferBody;
}

describe.skipIf(clusterDown())("tokens survive a SIGKILL mid-burst", () => {
  const cluster = useCluster("tokcrash");
  const dataDir = cluster.tempDir("tokens");
  const tokensEnv = { DATA_DIR: dataDir, CHANNELS_URL: NATS_URL, OUTBOX_INTERVAL_MS: "200" };
  let gateway: Gateway;
  let tokens: NodeProcess | undefined;
  let probe: ServiceBroker;
  let client: ApiClient;
  const seen = new Map<string, number>();

  const startTokens = (name = "tokens") =>
    cluster.node({ name, services: ["tokens"], env: tokensEnv });

  beforeAll(async () => {
    [, tokens, , gateway] = await Promise.all([
      cluster.node({ name: "users", services: ["users"] }),
      startTokens(),
      cluster.node({
        name: "catalog",
        services: ["catalog"],
        env: { DATA_DIR: ":memory:", CHANNELS_URL: NATS_URL },
      }),
      cluster.gateway({ env: { READY_SERVICES: "users,tokens,catalog", RATE_LIMIT_MAX: "0" } }),
    ]);
    client = gateway.client;
    // A consumer in this process, as catalog would be: a durable JetStream group.
    probe = await cluster.broker(
      {
        // As moleculer.config.ts: notice the dead node soon, never wait forever on it.
        heartbeatInterval: 2,
        heartbeatTimeout: 6,
        middlewares: [jetStreamChannels(NATS_URL)],
      },
      broker =>
        broker.createService({
          name: "probe",
          channels: {
            "tokens.transferred": {
              group: "probe",
              handler(ctx: Context<DomainEvent<TokenTransferred>>) {
                const id = ctx.params.data.transferId;
                seen.set(id, (seen.get(id) ?? 0) + 1);
              },
            },
          },
        } as never),
    );
  });

  it("keeps every acknowledged transfer exactly once and re-sends their events", async () => {
    const people: Registered[] = [];
    for (let i = 0; i < ACCOUNTS; i++) people.push(await registerUser(client, `crash${i}`));
    const token = await createToken(client, people[0].token, {
      initialSupply: String(EACH * BigInt(ACCOUNTS)),
    });
    const acknowledged: TransferBody[] = [];
    for (let i = 1; i < ACCOUNTS; i++) {
      const res = await client.post<TransferBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: people[i].id, amount: String(EACH) },
        { token: people[0].token },
      );
      expect(res.status).toBe(201);
      acknowledged.push(res.body);
    }

    const send = async (s: Sent): Promise<Sent> => {
      try {
        const res = await client.post<TransferBody>(
          `/api/tokens/${token.id}/transfers`,
          { to: people[s.to].id, amount: String(s.amount) },
          { token: people[s.from].token, headers: { "idempotency-key": s.key } },
        );
        // 409 "send it again with a new key": the crash came before anything moved.
        const status =
          res.status === 409 && /new Idempotency-Key/.test(res.text) ? 410 : res.status;
        return { ...s, status, body: res.status === 201 ? res.body : undefined };
      } catch {
        return { ...s, status: 0 }; // connection trouble: outcome unknown
      }
    };

    // Eight clients send transfers until told to stop; the tokens process dies meanwhile.
    const sent: Sent[] = [];
    const clients = startClients(8, async (c, n) => {
      sent.push(
        await send({
          key: `crash-${c}-${n}`,
          ...transferPair(c, n, ACCOUNTS),
          amount: BigInt(1 + (n % 7)),
          status: -1,
        }),
      );
    });
    await waitUntil(() => sent.filter(s => s.status === 201).length >= 150, 30_000, 5);
    await tokens!.kill("SIGKILL");
    await new Promise(r => setTimeout(r, 500));
    await clients.stop();
    expect(sent.some(s => s.status !== 201 && s.status !== 422)).toBe(true);

    // A new node id, as a restarted pod gets; same data.
    tokens = await startTokens("tokens-restarted");
    await gateway.ready();

    // Every request whose outcome the client did not learn is retried with its key, over
    // HTTP as a client would: the journal makes the retry return the first result, or
    // says (410 here) that the transfer was abandoned before anything moved.
    const definite = [201, 410, 422];
    const unresolved = sent.filter(s => !definite.includes(s.status));
    for (const s of unresolved) {
      const done = await waitUntil(async () => {
        const again = await send(s);
        return definite.includes(again.status) ? again : null;
      }, 30_000);
      Object.assign(s, done);
    }
    const ok = sent.filter(s => s.status === 201);
    // Every acknowledged key, replayed through a new gateway (so no gateway's memory of
    // answers helps): the tokens journal names the transfer the client was given.
    const fresh = await cluster.gateway({
      name: "gateway-2",
      env: { READY_SERVICES: "users,tokens", RATE_LIMIT_MAX: "0" },
    });
    for (const s of ok) {
      const res = await fresh.client.post<TransferBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: people[s.to].id, amount: String(s.amount) },
        { token: people[s.from].token, headers: { "idempotency-key": s.key } },
      );
      expect(res.status, s.key).toBe(201);
      expect(res.body.id, s.key).toBe(s.body!.id);
    }
    acknowledged.push(...ok.map(s => s.body!));
    expect(new Set(ok.map(s => s.body!.id)).size).toBe(ok.length);

    // Exactly once: the balances are what the acknowledged transfers add up to.
    const expected = Array.from({ length: ACCOUNTS }, () => EACH);
    for (const s of ok) {
      expected[s.from] -= s.amount;
      expected[s.to] += s.amount;
    }
    const balances = await Promise.all(people.map(p => balanceOf(client, token.id, p.id)));
    expect(balances).toEqual(expected.map(String));
    const holders = await allHolders(client, token.id);
    expect(sumAmounts(holders)).toBe(EACH * BigInt(ACCOUNTS));

    // Every acknowledged transfer's event arrives, also those the crash left unsent.
    await waitUntil(() => acknowledged.every(t => seen.has(t.id)), 30_000);
    await waitUntil(async () => {
      const stats = await probe.call<{ unsent: number }>("tokens.outboxStats");
      return stats.unsent === 0;
    }, 30_000);

    // The read model catches up: every acknowledged transfer counted once, exact holders.
    const holdersNow = expected.filter(b => b > 0n).length;
    const view = await waitUntil(async () => {
      const res = await client.get<{ stats: { holders: number; transfers: number } }>(
        `/api/tokens/${token.id}`,
      );
      return res.body.stats?.transfers === acknowledged.length &&
        res.body.stats.holders === holdersNow
        ? res.body
        : null;
    }, 30_000);
    expect(view?.stats).toEqual({ holders: holdersNow, transfers: acknowledged.length });
  });
});
