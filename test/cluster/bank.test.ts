import { describe, expect, it } from "vitest";
import { registerUser, type Registered } from "../helpers/http";
import { clusterDown, useCluster, waitUntil, type Gateway } from "../helpers/cluster";
import { allHolders, createToken, startClients, sumAmounts } from "../helpers/tokens";
import { transferPair, type TransferBody } from "../helpers/tokens";

/**
 * A bank over REST, as a client would run it: the whole platform in one process on NeDB
 * files (embedded mode), ten clients sending transfers with an Idempotency-Key each and
 * retrying every one until its answer is definite, while the process is SIGKILLed and
 * started again three times. Afterwards every key the clients saw acknowledged names, on
 * replay, the transfer they were given, and the balances are exactly what the
 * acknowledged transfers add up to. Some transfers move nothing (to oneself, or zero):
 * their journal entries carry no debit, the case a restart once ran a second time.
 */

const ACCOUNTS = 5;
const EACH = 10_000n;
const CLIENTS = 10;
const KILLS = 3;

interface Sent {
  key: string;
  from: number;
  to: number;
  amount: bigint;
  /** 201, 422, "gone" (abandoned before anything moved), or 0 while unknown. */
  outcome: number | "gone";
  id?: string;
}

describe.skipIf(clusterDown())("a bank over REST with its process SIGKILLed", () => {
  const cluster = useCluster("bank");
  const dataDir = cluster.tempDir("bank");
  const env = {
    TRANSPORTER: "", // one process, as `npm start`
    DATA_DIR: dataDir,
    RATE_LIMIT_MAX: "0",
    READY_SERVICES: "users,tokens",
  };
  const start = () => cluster.gateway({ services: ["users", "tokens"], env });

  it("keeps every acknowledged key's transfer, once, across three crashes", async () => {
    let gw: Gateway = await start();
    const people: Registered[] = [];
    for (let i = 0; i < ACCOUNTS; i++) people.push(await registerUser(gw.client, `bank${i}`));
    const token = await createToken(gw.client, people[0].token, {
      initialSupply: String(EACH * BigInt(ACCOUNTS)),
    });
    for (let i = 1; i < ACCOUNTS; i++) {
      const res = await gw.client.post(
        `/api/tokens/${token.id}/transfers`,
        { to: people[i].id, amount: String(EACH) },
        { token: people[0].token },
      );
      expect(res.status).toBe(201);
    }

    const send = async (s: Sent): Promise<void> => {
      try {
        const res = await gw.client.post<TransferBody>(
          `/api/tokens/${token.id}/transfers`,
          { to: people[s.to].id, amount: String(s.amount) },
          { token: people[s.from].token, headers: { "idempotency-key": s.key } },
        );
        if (res.status === 201) [s.outcome, s.id] = [201, res.body.id];
        else if (res.status === 422) s.outcome = 422;
        else if (res.status === 409 && /new Idempotency-Key/.test(res.text)) s.outcome = "gone";
      } catch {
        // Down: the outcome stays unknown, and the client asks again.
      }
    };

    const sent: Sent[] = [];
    const clients = startClients(CLIENTS, async (c, n) => {
      const pair = transferPair(c, n, ACCOUNTS);
      // Every 9th to oneself, every 11th of nothing: transfers that move nothing.
      const s: Sent = {
        key: `bank-${c}-${n}`,
        from: pair.from,
        to: n % 9 === 0 ? pair.from : pair.to,
        amount: BigInt(n % 11 === 0 ? 0 : 1 + (n % 5)),
        outcome: 0,
      };
      sent.push(s);
      await send(s);
      while (s.outcome === 0 && !clients.stopped) {
        await new Promise(r => setTimeout(r, 50));
        await send(s);
      }
    });
    for (let k = 0; k < KILLS; k++) {
      const target = sent.filter(s => s.outcome === 201).length + 300;
      await waitUntil(() => sent.filter(s => s.outcome === 201).length >= target, 30_000, 5);
      await gw.node.kill("SIGKILL");
      await new Promise(r => setTimeout(r, 200));
      gw = await start();
    }
    await waitUntil(
      () => sent.filter(s => s.outcome === 201).length >= 300 * (KILLS + 1),
      30_000,
      5,
    );
    await clients.stop();
    // What was left unknown at the stop is asked until it is known.
    for (const s of sent.filter(x => x.outcome === 0))
      await waitUntil(async () => (await send(s), s.outcome !== 0), 30_000);

    // A last restart, so nothing but the files answers (no gateway memory of answers).
    await gw.node.kill("SIGKILL");
    gw = await start();
    const ok = sent.filter(s => s.outcome === 201);
    expect(new Set(ok.map(s => s.id)).size).toBe(ok.length);
    for (const s of ok) {
      const res = await gw.client.post<TransferBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: people[s.to].id, amount: String(s.amount) },
        { token: people[s.from].token, headers: { "idempotency-key": s.key } },
      );
      expect(res.status, s.key).toBe(201);
      expect(res.body.id, s.key).toBe(s.id);
    }
    const expected = Array.from({ length: ACCOUNTS }, () => EACH);
    for (const s of ok) {
      expected[s.from] -= s.amount;
      expected[s.to] += s.amount;
    }
    const holders = await allHolders(gw.client, token.id);
    const byAccount = new Map(holders.map(h => [h.account, h.amount]));
    expect(people.map(p => byAccount.get(p.id) ?? "0")).toEqual(expected.map(String));
    expect(sumAmounts(holders)).toBe(EACH * BigInt(ACCOUNTS));
  });
});
