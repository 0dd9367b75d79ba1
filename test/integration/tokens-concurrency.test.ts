import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Service, ServiceSchema } from "moleculer";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type Registered } from "../helpers/http";
import { waitUntil } from "../helpers/cluster";
import {
  allHolders,
  balanceOf,
  createToken,
  sumAmounts,
  type TokenBody,
  type TransferBody,
} from "../helpers/tokens";

/**
 * Many simultaneous transfers among a handful of accounts: the supply stays equal to
 * the sum of balances, no balance goes below zero, and every acknowledged transfer is
 * applied exactly once (the final balances are exactly what the acknowledged
 * transfers add up to).
 */

const ACCOUNTS = 6;
const EACH = 1000n;
const TRANSFERS = 400;

interface Planned {
  from: number;
  to: number;
  amount: bigint;
  key: string;
}

/** Deterministic pseudo-random plan, so a failure can be replayed. */
function plan(seed: number): Planned[] {
  let x = seed;
  const next = (n: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % n;
  };
  return Array.from({ length: TRANSFERS }, (_, i) => ({
    from: next(ACCOUNTS),
    to: next(ACCOUNTS),
    // Large enough that some transfers must fail for lack of funds.
    amount: BigInt(next(600)),
    key: `burst-${seed}-${i}`,
  }));
}

function expectedBalances(planned: Planned[], acked: boolean[]): bigint[] {
  const out = Array.from({ length: ACCOUNTS }, () => EACH);
  planned.forEach((t, i) => {
    if (!acked[i]) return;
    out[t.from] -= t.amount;
    out[t.to] += t.amount;
  });
  return out;
}

describe("concurrent transfers", () => {
  let p: Platform;
  let users: Registered[];

  beforeAll(async () => {
    p = await startPlatform(["api", "users", "tokens"], {
      READY_SERVICES: "users,tokens",
      RATE_LIMIT_MAX: "0",
    });
    users = [];
    for (let i = 0; i < ACCOUNTS; i++) users.push(await registerUser(p.client, `acct${i}`));
  });
  afterAll(() => p.stop());

  /** A token whose supply is spread evenly over the accounts. */
  async function fundedToken(): Promise<TokenBody> {
    const token = await createToken(p.client, users[0].token, {
      initialSupply: String(EACH * BigInt(ACCOUNTS)),
    });
    for (let i = 1; i < ACCOUNTS; i++) {
      const res = await p.client.post(
        `/api/tokens/${token.id}/transfers`,
        { to: users[i].id, amount: String(EACH) },
        { token: users[0].token },
      );
      expect(res.status).toBe(201);
    }
    return token;
  }

  async function checkInvariant(token: TokenBody, expected: bigint[]) {
    const holders = await allHolders(p.client, token.id);
    expect(sumAmounts(holders)).toBe(EACH * BigInt(ACCOUNTS));
    for (const h of holders) expect(BigInt(h.amount)).toBeGreaterThan(0n);
    const actual = await Promise.all(users.map(u => balanceOf(p.client, token.id, u.id)));
    expect(actual).toEqual(expected.map(String));
  }

  it("keeps supply == sum of balances over HTTP, applying each acknowledged transfer once", async () => {
    const token = await fundedToken();
    const planned = plan(7);
    const send = (t: Planned) =>
      p.client.post<TransferBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: users[t.to].id, amount: String(t.amount) },
        { token: users[t.from].token, headers: { "idempotency-key": t.key } },
      );
    const results = await Promise.all(planned.map(send));
    const statuses = new Set(results.map(r => r.status));
    expect([...statuses].every(s => s === 201 || s === 422)).toBe(true);
    const acked = results.map(r => r.status === 201);
    expect(acked.filter(Boolean).length).toBeGreaterThan(TRANSFERS / 4);
    expect(acked.filter(a => !a).length).toBeGreaterThan(0);
    const ids = results.filter(r => r.status === 201).map(r => r.body.id);
    expect(new Set(ids).size).toBe(ids.length);
    await checkInvariant(token, expectedBalances(planned, acked));
    // The outbox relay keeps up with the burst: every event goes out.
    await waitUntil(
      async () => (await p.broker.call<{ unsent: number }>("tokens.outboxStats")).unsent === 0,
      5000,
    );

    // Every key again, all at once: the first answers come back and nothing moves twice.
    const again = await Promise.all(planned.map(send));
    again.forEach((r, i) => {
      expect(r.status).toBe(results[i].status);
      expect(r.body).toEqual(results[i].body);
    });
    await checkInvariant(token, expectedBalances(planned, acked));
  });

  it("keeps publishing events after a relay round that found nothing to send", async () => {
    // A round with an empty queue (two writes scheduled two rounds, the first sent both)
    // once left the relay marked as running forever: nothing was published again.
    const tokens = p.broker.getLocalService("tokens") as unknown as {
      outbox: { flush(): Promise<void> };
    };
    await tokens.outbox.flush();
    const before = await p.broker.call<{ published: number }>("tokens.outboxStats");
    await fundedToken();
    const after = await waitUntil(async () => {
      const stats = await p.broker.call<{ unsent: number; published: number }>(
        "tokens.outboxStats",
      );
      return stats.unsent === 0 ? stats : null;
    }, 5000);
    // tokens.created and one tokens.transferred per funded account went out.
    expect(after!.published - before.published).toBe(ACCOUNTS);
  });

  it("stays exact when two writers share the database without sharing locks or caches", async () => {
    // A second instance of the service on the same database, with engines, caches and
    // outbox of its own, as another process on the same MongoDB: only the transactions
    // keep them apart.
    type Twin = Service & { stores: unknown; database: unknown; buildEngines(): void };
    const schema = (await import("../../services/tokens.service"))
      .default as unknown as ServiceSchema;
    const twin = p.broker.createService({ ...schema, name: "tokens-twin" }) as Twin;
    await p.broker.waitForServices("tokens-twin");
    const first = p.broker.getLocalService("tokens") as Twin;
    twin.stores = first.stores;
    twin.database = first.database;
    twin.buildEngines();

    const token = await fundedToken();
    const planned = plan(11);
    const results = await Promise.allSettled(
      planned.map((t, i) =>
        p.broker.call<TransferBody, Record<string, unknown>>(
          i % 2 === 0 ? "tokens.transferInternal" : "tokens-twin.transferInternal",
          {
            tokenId: token.id,
            from: users[t.from].id,
            to: users[t.to].id,
            amount: String(t.amount),
            idempotencyKey: t.key,
          },
        ),
      ),
    );
    for (const r of results) {
      if (r.status === "rejected") expect(r.reason).toMatchObject({ type: "INSUFFICIENT_FUNDS" });
    }
    const acked = results.map(r => r.status === "fulfilled");
    expect(acked.filter(Boolean).length).toBeGreaterThan(TRANSFERS / 4);
    await checkInvariant(token, expectedBalances(planned, acked));
    await p.broker.destroyService(twin);
  });
});
