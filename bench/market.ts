import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runnerArgs } from "../bin/runner-args";
import { api, freePort, percentile, waitReady } from "./common";

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
    env: {
      ...process.env,
      SERVICEDIR: path.join(ROOT, "dist/services"),
      SERVICES: SERVICES.join(","),
      TRANSPORTER: "",
      PORT: String(port),
      HOST: "127.0.0.1",
      DATA_DIR: dataDir,
      RATE_LIMIT_MAX: "0",
      LOG_LEVEL: "warn",
      JWT_SECRET: process.env.JWT_SECRET ?? "bench-secret",
      READY_SERVICES: SERVICES.filter(s => s !== "api").join(","),
    },
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

/** A call that must answer `status`. */
async function must<T>(status: number, call: Promise<{ status: number; body: T }>): Promise<T> {
  const res = await call;
  if (res.status !== status)
    throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Runs `fn` over `items` with at most `n` at once. */
async function pooled<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

async function main(): Promise<void> {
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
    const buyers: User[] = [];
    for (let i = 0; i < CLIENTS; i++) buyers.push(await register(`buyer${i}`));
    const supply = (BigInt(PRICE) * BigInt(PURCHASES + CLIENTS) * 2n).toString();
    const token = await must(
      201,
      api<{ id: string }>(
        base,
        "POST",
        "/api/tokens",
        { name: "Bench", symbol: "BMKT", decimals: 0, initialSupply: supply },
        seller.token,
      ),
    );
    const share = (BigInt(supply) / 2n / BigInt(CLIENTS)).toString();
    for (const b of buyers)
      await must(
        201,
        api(
          base,
          "POST",
          `/api/tokens/${token.id}/transfers`,
          { to: b.id, amount: share },
          seller.token,
        ),
      );
    const col = await must(
      201,
      api<{ id: string }>(
        base,
        "POST",
        "/api/collections",
        { name: "Bench", symbol: "BNCH", royaltyBps: 250 },
        seller.token,
      ),
    );
    const listings: string[] = [];
    await pooled(
      Array.from({ length: PURCHASES }, (_, i) => i),
      CLIENTS,
      async i => {
        const nft = await must(
          201,
          api<{ id: string }>(
            base,
            "POST",
            `/api/collections/${col.id}/nfts`,
            { metadata: { name: `#${i}` } },
            seller.token,
          ),
        );
        const l = await must(
          201,
          api<{ id: string }>(
            base,
            "POST",
            "/api/market/listings",
            { nftId: nft.id, priceTokenId: token.id, price: PRICE },
            seller.token,
          ),
        );
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
    times.sort((a, b) => a - b);
    console.log("-- embedded (one process)");
    console.log(`buyers: ${CLIENTS}, listings: ${PURCHASES}, NeDB files in ${dataDir}`);
    console.log(`outcomes: ${[...outcomes].map(([s, n]) => `${s}=${n}`).join(" ")}`);
    console.log(`purchases/s (sold): ${(times.length / elapsed).toFixed(1)}`);
    console.log(`time to sold p50: ${percentile(times, 0.5).toFixed(1)} ms`);
    console.log(`time to sold p99: ${percentile(times, 0.99).toFixed(1)} ms`);
  } finally {
    await stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
