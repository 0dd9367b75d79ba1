import { api, must, percentile, pooled } from "./common";
import { install } from "./procs";
import { createToken, register, startPlatform, type BenchUser } from "./platform";
import { report } from "./report";
import { runBids } from "./bids";

/**
 * Offers (issue 23), embedded: the platform in one process on synced SQLite files. Setup
 * (not measured): an owner with BENCH_OFFERS NFTs of a collection (royalty 2.5 %),
 * BENCH_CLIENTS makers funded with a price token. Then the makers make one offer per NFT
 * (each a saga: the offer, its price into escrow, active), and the owner accepts them
 * BENCH_CLIENTS at a time (each a sale saga: the NFT to the maker, the price less the
 * royalty out of escrow). Offers made and accepted per second, p50/p99 of each request.
 * At the end the escrow must hold nothing (every offer accepted) and the owner must have
 * been paid every price less its royalty. Then bids (bench/bids.ts): bidders racing on
 * running auctions, bids accepted per second, the escrow checked against what it holds.
 *
 * env: BENCH_CLIENTS (10), BENCH_OFFERS (300); BENCH_AUCTIONS (20), BENCH_BIDDERS (20),
 * BENCH_BID_SECONDS (10).
 */

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 10);
const OFFERS = Number(process.env.BENCH_OFFERS ?? 300);
const PRICE = 1000n;
const ESCROW = "escrow_market";
/** The operator page's admin: the bids phase reads the escrow's figures there too. */
const ADMIN = "bench-admin@example.com";

/** Runs `fn` for each item, `CLIENTS` at once; the per-request times and the rate. */
async function timed<T>(items: T[], fn: (item: T) => Promise<void>) {
  const times: number[] = [];
  const t0 = performance.now();
  await pooled(items, CLIENTS, async item => {
    const t = performance.now();
    await fn(item);
    times.push(performance.now() - t);
  });
  const elapsed = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  return {
    rate: items.length / elapsed,
    p50: percentile(times, 0.5),
    p99: percentile(times, 0.99),
  };
}

async function main(): Promise<void> {
  install();
  const p = await startPlatform({
    mode: "embedded",
    services: ["users", "tokens", "nfts", "market", "sagas", "api"],
    // Racing bid sagas on a busy machine: each answers when it ended, rarely 202.
    env: { ADMIN_EMAILS: ADMIN, SAGAS_WAIT_MS: "20000" },
  });
  try {
    const { base } = p;
    const owner = await register(base, "owner");
    const admin = await must(
      201,
      api<{ user: { id: string }; token: string }>(base, "POST", "/api/auth/register", {
        email: ADMIN,
        password: "bench password",
        displayName: "admin",
      }),
    );
    const makers: BenchUser[] = [];
    for (let i = 0; i < CLIENTS; i++) makers.push(await register(base, `maker${i}`));
    const tokenId = await createToken(base, owner);
    const each = (PRICE * BigInt(OFFERS)).toString();
    for (const m of makers)
      await must(
        201,
        api(
          base,
          "POST",
          `/api/tokens/${tokenId}/transfers`,
          { to: m.id, amount: each },
          owner.token,
        ),
      );
    const col = await must(
      201,
      api<{ id: string }>(
        base,
        "POST",
        "/api/collections",
        { name: "Bench", symbol: "BOFR", royaltyBps: 250 },
        owner.token,
      ),
    );
    const nfts: string[] = [];
    await pooled(
      Array.from({ length: OFFERS }, (_, i) => i),
      CLIENTS,
      async i => {
        const nft = await must(
          201,
          api<{ id: string }>(
            base,
            "POST",
            `/api/collections/${col.id}/nfts`,
            { metadata: { name: `#${i}` } },
            owner.token,
          ),
        );
        nfts.push(nft.id);
      },
    );
    const balance = async (account: string) =>
      BigInt(
        (
          await must(
            200,
            api<{ amount: string }>(base, "GET", `/api/tokens/${tokenId}/balances/${account}`),
          )
        ).amount,
      );
    const ownerBefore = await balance(owner.id);

    const offers: string[] = [];
    const made = await timed(
      nfts.map((nftId, i) => ({ nftId, maker: makers[i % CLIENTS] })),
      async ({ nftId, maker }) => {
        const o = await must(
          201,
          api<{ id: string }>(
            base,
            "POST",
            "/api/market/offers",
            { nftId, priceTokenId: tokenId, price: PRICE.toString() },
            maker.token,
          ),
        );
        offers.push(o.id);
      },
    );
    const byOffer = new Map(offers.map(id => [id, ""]));
    const list = await must(
      200,
      api<{ rows: Array<{ id: string; nftId: string }> }>(
        base,
        "GET",
        `/api/market/offers?collection=${col.id}&state=active&limit=100`,
      ),
    );
    for (const r of list.rows) byOffer.set(r.id, r.nftId);
    // Each offer's NFT (the list pages at 100): looked up one by one for the rest.
    for (const id of offers)
      if (!byOffer.get(id))
        byOffer.set(
          id,
          (await must(200, api<{ nftId: string }>(base, "GET", `/api/market/offers/${id}`))).nftId,
        );
    const escrowFull = await balance(ESCROW);
    const accepted = await timed(offers, async id => {
      await must(
        201,
        api(
          base,
          "POST",
          `/api/market/offers/${id}/accept`,
          { nftId: byOffer.get(id) },
          owner.token,
        ),
      );
    });
    const escrowAfter = await balance(ESCROW);
    const royalty = (PRICE * 250n) / 10_000n;
    const paid = (await balance(owner.id)) - ownerBefore;
    // The owner is also the collection's owner: it gets the royalty back as well.
    const conserved =
      escrowFull === PRICE * BigInt(OFFERS) &&
      escrowAfter === 0n &&
      paid === PRICE * BigInt(OFFERS);
    console.log("-- offers, embedded (one process, synced SQLite)");
    console.log(`makers: ${CLIENTS}, offers: ${OFFERS}`);
    console.log(
      `made: ${made.rate.toFixed(0)}/s, p50 ${made.p50.toFixed(1)} ms, p99 ${made.p99.toFixed(1)} ms`,
    );
    console.log(
      `accepted: ${accepted.rate.toFixed(0)}/s, p50 ${accepted.p50.toFixed(1)} ms, p99 ${accepted.p99.toFixed(1)} ms`,
    );
    console.log(
      `escrow: ${escrowFull} while all were active (= ${PRICE * BigInt(OFFERS)}), ${escrowAfter} after; owner paid ${paid} (royalty ${royalty} each, back to the owner as collection owner); conserved: ${conserved}`,
    );
    const bids = await runBids({
      base,
      owner,
      tokenId,
      collectionId: col.id,
      admin: { id: admin.user.id, token: admin.token },
    });
    report("offers", [
      {
        bench: "offers",
        case: "offers made embedded (sagas)",
        value: made.rate,
        unit: "ops/s",
        p50: made.p50,
        p99: made.p99,
        goal: "escrow = sum of active offers",
        met: conserved,
      },
      {
        bench: "offers",
        case: "offers accepted embedded (sale sagas)",
        value: accepted.rate,
        unit: "ops/s",
        p50: accepted.p50,
        p99: accepted.p99,
        goal: "escrow 0 after, owner paid every price",
        met: conserved,
      },
      ...bids.rows,
    ]);
    if (!conserved || !bids.ok) {
      console.error("!! offers bench FAILED: the escrow's money does not add up (see above)");
      process.exitCode = 1;
    }
  } finally {
    await p.stop();
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
