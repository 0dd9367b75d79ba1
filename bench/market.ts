import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runnerArgs } from "../bin/runner-args";
import {
  api,
  freePort,
  must,
  percentile,
  platformEnv,
  pooled,
  printOutcomes,
  waitReady,
} from "./common";
import { install } from "./procs";
import { report } from "./report";

/**
 * NFT purchases (the purchase saga: reserve the listing, pay the seller and the royalty,
 * move the NFT, mark it sold) through the gateway, embedded: the platform in one process,
 * no transporter, NeDB files in a fresh temp dir (synced, as in production on NeDB).
 *
 * Setup (not measured): a seller with a collection (royalty 2.5 %), BENCH_PURCHASES NFTs
 * minted and listed; BENCH_CLIENTS buyers funded with a price token. Then the buyers buy
 * the listings, each client one purchase at a time: purchases per second, and p50/p99 of
 * the time from POST …/buy to the listing sold (the 201, or the first GET that shows
 * `sold` after a 202).
 *
 * Goal (set by issue 15's suite; the NFT issue set none): ≥ 200 purchases/s with p99 < 150 ms
 * to sold, every purchase sold.
 *
 * env: BENCH_CLIENTS (10), BENCH_PURCHASES (300).
 */

const ROOT = path.resolve(__dirname, "../..");
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 10);
const PURCHASES = Number(process.env.BENCH_PURCHASES ?? 300);
const SERVICES = ["users", "tokens", "nfts", "market", "sagas", "api"];
const PRICE = "1000";

interface User {
  id: string;
  token: string;
}

async function startPlatform(
  dataDir: string,
): Promise<{ base: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, runnerArgs(ROOT), {
    cwd: ROOT,
    stdio: ["ignore", "inherit", "inherit"],
    env: platformEnv(ROOT, port, dataDir, {
      SERVICES: SERVICES.join(","),
      READY_SERVICES: SERVICES.filter(s => s !== "api").join(","),
    }),
  });
  const exited = new Promise(resolve => child.once("exit", resolve));
  const stop = async () => {
    if (child.exitCode === null) child.kill("SIGTERM");
    await exited;
  };
  process.on("exit", () => child.exitCode === null && child.kill("SIGKILL"));
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitReady(base, () => child.exitCode !== null, 60_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { base, stop };
}

async function main(): Promise<void> {
  install(); // SIGINT/SIGTERM still stop the platform (its exit handler)
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-bench-market-"));
  const { base, stop } = await startPlatform(dataDir);
  try {
    const register = async (name: string): Promise<User> => {
      const body = await must(
        201,
        api<{ user: { id: string }; token: string }>(base, "POST", "/api/auth/register", {
          email: `${name}-${process.pid}@example.com`,
          password: "bench password",
          displayName: name,
        }),
      );
      return { id: body.user.id, token: body.token };
    };
    const seller = await register("seller");
    // The setup is the seller's: each of its POSTs must create (201).
    const create = (url: string, body: unknown) =>
      must(201, api<{ id: string }>(base, "POST", url, body, seller.token));
    const buyers: User[] = [];
    for (let i = 0; i < CLIENTS; i++) buyers.push(await register(`buyer${i}`));
    const supply = (BigInt(PRICE) * BigInt(PURCHASES + CLIENTS) * 2n).toString();
    const token = await create("/api/tokens", {
      name: "Bench",
      symbol: "BMKT",
      decimals: 0,
      initialSupply: supply,
    });
    const share = (BigInt(supply) / 2n / BigInt(CLIENTS)).toString();
    for (const b of buyers)
      await create(`/api/tokens/${token.id}/transfers`, { to: b.id, amount: share });
    const col = await create("/api/collections", {
      name: "Bench",
      symbol: "BNCH",
      royaltyBps: 250,
    });
    const listings: string[] = [];
    await pooled(
      Array.from({ length: PURCHASES }, (_, i) => i),
      CLIENTS,
      async i => {
        const nft = await create(`/api/collections/${col.id}/nfts`, {
          metadata: { name: `#${i}` },
        });
        const l = await create("/api/market/listings", {
          nftId: nft.id,
          priceTokenId: token.id,
          price: PRICE,
        });
        listings.push(l.id);
      },
    );

    const times: number[] = [];
    const outcomes = new Map<string, number>();
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      buyers.map(async me => {
        while (next < listings.length) {
          const id = listings[next++];
          const t = performance.now();
          const res = await api<{ listing: { state: string } }>(
            base,
            "POST",
            `/api/market/listings/${id}/buy`,
            undefined,
            me.token,
          );
          let state = res.status < 300 ? res.body.listing.state : `HTTP ${res.status}`;
          while (state === "reserved") {
            await new Promise(r => setTimeout(r, 20));
            state = (await api<{ state: string }>(base, "GET", `/api/market/listings/${id}`)).body
              .state;
          }
          outcomes.set(state, (outcomes.get(state) ?? 0) + 1);
          if (state === "sold") times.push(performance.now() - t);
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    console.log("-- embedded (one process)");
    console.log(`buyers: ${CLIENTS}, listings: ${PURCHASES}, NeDB files in ${dataDir}`);
    printOutcomes("purchases", "sold", outcomes, times, elapsed);
    const rate = times.length / elapsed;
    const p99 = percentile(times, 0.99);
    const goal = "≥ 200/s, p99 < 150 ms, all sold";
    console.log(`goal: ${goal}`);
    report("market", [
      {
        bench: "market",
        case: "market purchases embedded (sagas)",
        value: rate,
        unit: "ops/s",
        p50: percentile(times, 0.5),
        p99,
        goal,
        met: rate >= 200 && p99 < 150 && times.length === listings.length,
        ...(times.length < listings.length
          ? { note: `${listings.length - times.length} of ${listings.length} not sold` }
          : {}),
      },
    ]);
  } finally {
    await stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
