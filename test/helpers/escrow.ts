import type { ServiceBroker } from "moleculer";
import { ESCROW_ACCOUNT } from "../../lib/events/market";
import type { MarketOpsStats } from "../../lib/market/escrow-holdings";
import type { ApiClient } from "./http";
import { balanceOf } from "./tokens";

/**
 * Issue 23: the escrow's balance always equals the sum of what it holds. Every market test
 * that moves money into escrow ends with `expectEscrowBalanced`: for each price token it
 * used, the escrow account's balance equals the prices of the active offers, the highest
 * bids of the active auctions and the prices of the listings reserved by a purchase, as
 * the public API lists them; and, where the test's broker reaches the market (its own, or a
 * cluster's over NATS), the operator page's figures (market.opsStats) say the same. Sagas pay a step after the market's state
 * changes (a beaten bid's refund, an expired offer's), so it waits a moment for them.
 */

type Page<T> = { rows: T[]; total: number };
interface Priced {
  priceTokenId: string;
  price?: string;
  highestBid?: { amount: string } | null;
}

/** Every row of a list (pages of 100). */
async function all<T>(client: ApiClient, path: string): Promise<T[]> {
  const rows: T[] = [];
  for (let offset = 0; ; offset += 100) {
    const res = await client.get<Page<T>>(`${path}&limit=100&offset=${offset}`);
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${res.text}`);
    rows.push(...res.body.rows);
    if (res.body.rows.length < 100 || rows.length >= res.body.total) return rows;
  }
}

/** What the escrow should hold of each of `tokens`, from the public lists. */
async function heldByApi(client: ApiClient, tokens: string[]): Promise<Map<string, bigint>> {
  const [offers, auctions, reserved] = await Promise.all([
    all<Priced>(client, "/api/market/offers?state=active"),
    all<Priced>(client, "/api/market/auctions?state=active"),
    all<Priced>(client, "/api/market/listings?state=reserved"),
  ]);
  const held = new Map(tokens.map(t => [t, 0n]));
  const add = (t: string, amount: string | undefined) => {
    if (held.has(t) && amount !== undefined) held.set(t, held.get(t)! + BigInt(amount));
  };
  for (const o of offers) add(o.priceTokenId, o.price);
  for (const a of auctions) add(a.priceTokenId, a.highestBid?.amount);
  for (const l of reserved) add(l.priceTokenId, l.price);
  return held;
}

/** Why the escrow does not balance now, or null when it does. */
async function imbalance(
  client: ApiClient,
  broker: ServiceBroker | undefined,
  tokens: string[],
): Promise<string | null> {
  const held = await heldByApi(client, tokens);
  const problems: string[] = [];
  for (const t of tokens) {
    const balance = BigInt(await balanceOf(client, t, ESCROW_ACCOUNT));
    if (balance !== held.get(t))
      problems.push(`${t}: escrow balance ${balance}, held ${held.get(t)}`);
  }
  const market = broker?.registry
    .getServiceList({ onlyAvailable: true })
    .some(s => s.name === "market");
  if (broker && market) {
    // A cluster's registry may still list a node just killed: asked again, another answers.
    const ops = await broker
      .call<MarketOpsStats, { tokens: string[] }>("market.opsStats", { tokens }, { timeout: 2000 })
      .catch((err: unknown) => {
        problems.push(`market.opsStats: ${String(err)}`);
        return null;
      });
    if (ops) {
      for (const t of tokens) {
        const line = ops.escrow.tokens.find(l => l.tokenId === t);
        if (!line || line.agrees !== true || BigInt(line.held) !== held.get(t))
          problems.push(`${t}: market.opsStats says ${JSON.stringify(line)}`);
      }
      if (ops.escrow.agrees !== true) problems.push(`market.opsStats: agrees ${ops.escrow.agrees}`);
    }
  }
  return problems.length ? problems.join("; ") : null;
}

/** Resolves once the escrow balances for every one of `tokens`; throws what differs after `timeoutMs`. */
export async function expectEscrowBalanced(
  p: { client: ApiClient; broker?: ServiceBroker },
  tokens: string[],
  timeoutMs = 5000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const problem = await imbalance(p.client, p.broker, tokens);
    if (problem === null) return;
    if (Date.now() > until) throw new Error(`The escrow does not balance: ${problem}`);
    await new Promise(r => setTimeout(r, 50));
  }
}
