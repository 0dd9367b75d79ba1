import { api, must, percentile, pooled } from "./common";
import { register, type BenchUser } from "./platform";
import type { Row } from "./report";

/**
 * The auction phase of the offers bench (bench/offers.ts, issue 23 item 8): BENCH_AUCTIONS
 * English auctions of the owner's NFTs (reserve 100, increment 1 %, an hour to run), and
 * BENCH_BIDDERS funded bidders, each of whom also holds one collection offer, bidding for
 * BENCH_BID_SECONDS on random auctions through the gateway, all at once: each bids the least
 * the last answer it saw allows, so bidders on one auction race and all but one are refused
 * BID_TOO_LOW (before any money moves, or by the bid's saga, which pays it back). Bids
 * accepted per second, the refusals, p50/p99 of every bid request. At the end the escrow's
 * balance must equal what it holds (the highest bids and the active offers), as the public
 * lists give them and as the operator page (/ops) says, and the bidders' money plus the
 * highest bids must be what they were given: otherwise the bench fails loudly.
 */

const AUCTIONS = Number(process.env.BENCH_AUCTIONS ?? 20);
const BIDDERS = Number(process.env.BENCH_BIDDERS ?? 20);
const SECONDS = Number(process.env.BENCH_BID_SECONDS ?? 10);
const FUNDS = 10n ** 12n;
const OFFER_PRICE = 500n;
const INCREMENT_BPS = 100;
const ESCROW = "escrow_market";

interface Page<T> {
  rows: T[];
  total: number;
}
interface AuctionView {
  id: string;
  priceTokenId: string;
  highestBid: { amount: string } | null;
}
interface Refusal {
  error?: { type?: string; data?: Array<{ field: string; message: string }> };
}
interface EscrowLine {
  tokenId: string;
  balance: string | null;
  held: string;
  agrees: boolean | null;
}
interface OpsView {
  market: { escrow: { agrees: boolean | null; tokens: EscrowLine[] } } | null;
}

export interface BidsSetup {
  base: string;
  owner: BenchUser;
  tokenId: string;
  collectionId: string;
  /** An admin of the platform's ADMIN_EMAILS: reads the operator page's figures. */
  admin: BenchUser;
}

/** The least next bid after `amount` (lib/market/auction-rules.ts minimumBid, 1 % up). */
const nextAfter = (amount: bigint): bigint => {
  const up = (amount * BigInt(10_000 + INCREMENT_BPS) + 9_999n) / 10_000n;
  return up > amount ? up : amount + 1n;
};

/** Every row of a public list, 100 at a time. */
async function all<T>(base: string, path: string): Promise<T[]> {
  const rows: T[] = [];
  for (let offset = 0; ; offset += 100) {
    const page = await must(200, api<Page<T>>(base, "GET", `${path}&limit=100&offset=${offset}`));
    rows.push(...page.rows);
    if (page.rows.length < 100 || rows.length >= page.total) return rows;
  }
}

export async function runBids(s: BidsSetup): Promise<{ rows: Row[]; ok: boolean }> {
  const { base, owner, tokenId } = s;
  const balance = async (account: string) =>
    BigInt(
      (
        await must(
          200,
          api<{ amount: string }>(base, "GET", `/api/tokens/${tokenId}/balances/${account}`),
        )
      ).amount,
    );
  const escrowBefore = await balance(ESCROW);

  // Setup (not measured): bidders, funded, each with one collection offer; the auctions.
  const bidders: BenchUser[] = [];
  await pooled(
    Array.from({ length: BIDDERS }, (_, i) => i),
    5, // scrypt's bulkhead: a few registrations at a time
    async i => {
      bidders.push(await register(base, `bidder${i}`));
    },
  );
  for (const b of bidders)
    await must(
      201,
      api(
        base,
        "POST",
        `/api/tokens/${tokenId}/transfers`,
        { to: b.id, amount: FUNDS.toString() },
        owner.token,
      ),
    );
  await pooled(bidders, 5, async b => {
    await must(
      201,
      api(
        base,
        "POST",
        "/api/market/offers",
        { collectionId: s.collectionId, priceTokenId: tokenId, price: OFFER_PRICE.toString() },
        b.token,
      ),
    );
  });
  const auctions: string[] = [];
  await pooled(
    Array.from({ length: AUCTIONS }, (_, i) => i),
    5,
    async i => {
      const nft = await must(
        201,
        api<{ id: string }>(
          base,
          "POST",
          `/api/collections/${s.collectionId}/nfts`,
          { metadata: { name: `lot ${i}` } },
          owner.token,
        ),
      );
      const a = await must(
        201,
        api<{ id: string }>(
          base,
          "POST",
          "/api/market/auctions",
          {
            nftId: nft.id,
            priceTokenId: tokenId,
            reservePrice: "100",
            minIncrementBps: INCREMENT_BPS,
            endsAt: new Date(Date.now() + 3_600_000).toISOString(),
          },
          owner.token,
        ),
      );
      auctions.push(a.id);
    },
  );

  // The least next bid of each auction, as the latest answer told it; shared by all bidders.
  const least = new Map(auctions.map(id => [id, 100n]));
  const times: number[] = [];
  const counts = { accepted: 0, tooLow: 0, pending: 0, other: 0 };
  const others = new Map<string, number>();
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  await Promise.all(
    bidders.map(async b => {
      while (performance.now() < deadline) {
        const id = auctions[Math.floor(Math.random() * auctions.length)];
        const amount = least.get(id)!;
        const t = performance.now();
        const res = await api<{ auction?: AuctionView } & Refusal>(
          base,
          "POST",
          `/api/market/auctions/${id}/bids`,
          { amount: amount.toString() },
          b.token,
        );
        times.push(performance.now() - t);
        if (res.status === 201) {
          counts.accepted++;
          const high = BigInt(res.body.auction?.highestBid?.amount ?? amount.toString());
          if (nextAfter(high) > least.get(id)!) least.set(id, nextAfter(high));
        } else if (res.status === 422 && res.body.error?.type === "BID_TOO_LOW") {
          counts.tooLow++;
          // "at least N": what the auction takes now.
          const m = /at least (\d+)/.exec(res.body.error.data?.[0]?.message ?? "");
          if (m && BigInt(m[1]) > least.get(id)!) least.set(id, BigInt(m[1]));
        } else if (res.status === 202) {
          counts.pending++; // its saga still runs: counted at the end, in the escrow check
        } else {
          counts.other++;
          const key = `${res.status} ${res.body.error?.type ?? ""}`;
          others.set(key, (others.get(key) ?? 0) + 1);
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  const rate = counts.accepted / elapsed;
  const p50 = percentile(times, 0.5);
  const p99 = percentile(times, 0.99);

  // The escrow holds exactly the highest bids and the active offers (sagas that answered 202
  // may still be paying back: a few seconds are given for them).
  let held = 0n;
  let escrow = 0n;
  let bids = 0n;
  let ops: OpsView | undefined;
  const until = Date.now() + 20_000;
  for (;;) {
    const [offers, running] = await Promise.all([
      all<{ price: string }>(base, "/api/market/offers?state=active"),
      all<AuctionView>(base, "/api/market/auctions?state=active"),
    ]);
    bids = running.reduce((sum, a) => sum + BigInt(a.highestBid?.amount ?? "0"), 0n);
    held = offers.reduce((sum, o) => sum + BigInt(o.price), 0n) + bids;
    escrow = await balance(ESCROW);
    ops = await must(200, api<OpsView>(base, "GET", "/ops/api/snapshot", undefined, s.admin.token));
    if ((escrow === held && ops.market?.escrow.agrees === true) || Date.now() > until) break;
    await new Promise(r => setTimeout(r, 250));
  }
  const line = ops?.market?.escrow.tokens.find(t => t.tokenId === tokenId);
  const paid = (await Promise.all(bidders.map(b => balance(b.id)))).reduce((x, y) => x + y, 0n);
  const conserved = paid + bids + OFFER_PRICE * BigInt(BIDDERS) === FUNDS * BigInt(BIDDERS);
  const balanced =
    escrowBefore === 0n &&
    escrow === held &&
    ops?.market?.escrow.agrees === true &&
    line?.balance === escrow.toString() &&
    line.held === held.toString();
  const ok = balanced && conserved && counts.other === 0;

  console.log(
    `-- bids, embedded: ${BIDDERS} bidders on ${AUCTIONS} auctions for ${SECONDS} s (increment ${INCREMENT_BPS / 100} %)`,
  );
  console.log(
    `bids accepted: ${rate.toFixed(1)}/s (${counts.accepted}); refused BID_TOO_LOW: ${counts.tooLow}; 202 (saga still running): ${counts.pending}; other: ${counts.other}${others.size ? ` (${[...others].map(([k, n]) => `${k}×${n}`).join(", ")})` : ""}`,
  );
  console.log(
    `every bid request: ${(times.length / elapsed).toFixed(1)}/s, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`,
  );
  console.log(
    `escrow: ${escrow}, held ${held} (highest bids ${bids} + ${BIDDERS} offers of ${OFFER_PRICE}); /ops says ${JSON.stringify(line)}; bidders' money conserved: ${conserved}`,
  );
  if (!ok)
    console.error(
      `!! bids: the escrow does not balance or money moved wrongly (escrow before ${escrowBefore}, balanced ${balanced}, conserved ${conserved}, other answers ${counts.other})`,
    );
  return {
    ok,
    rows: [
      {
        bench: "offers",
        case: "bids accepted embedded (bid sagas, racing)",
        value: rate,
        unit: "ops/s",
        p50,
        p99,
        goal: "escrow = highest bids + active offers",
        met: ok,
        note: `${counts.accepted} accepted, ${counts.tooLow} refused BID_TOO_LOW, ${counts.pending} answered 202, ${counts.other} other; p50/p99 of every bid request`,
      },
    ],
  };
}
