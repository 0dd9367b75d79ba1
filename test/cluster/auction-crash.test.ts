import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import { registerUser, type Registered } from "../helpers/http";
import { expectEscrowBalanced } from "../helpers/escrow";
import { clusterDown, useCluster, waitUntil } from "../helpers/cluster";
import type { Gateway, NodeProcess } from "../helpers/cluster";
import { setFaults, sleep } from "../helpers/resilience";
import { allHolders, createToken, sumAmounts } from "../helpers/tokens";
import type { Auction } from "../../lib/events/market";
import type { Collection, Nft } from "../../lib/events/nfts";

/**
 * An auction's end is a durable timer, over the real NATS, each service in a process of its
 * own: the market process (whose sweep fires the end) is SIGKILLed just before `endsAt` and
 * started again after it, on the same files; its sweep starts the settling saga, whose NFT
 * move a FAULTS delay holds; then the sagas process is SIGKILLed in the middle of it and
 * started again. The auction settles exactly once: the winner owns the NFT, the seller got
 * the price less the royalty, the collection's owner the royalty, the outbid bidder their
 * money back, every unit of the supply counted once.
 */

const SUPPLY = 100_000n;
const ROYALTY_BPS = 1000;
const HOLD_MS = 6000;

describe.skipIf(clusterDown())(
  "an auction ends once across SIGKILLs of the market and sagas",
  () => {
    const cluster = useCluster("auction", {
      env: {
        FAULTS_CONTROL: "true",
        RATE_LIMIT_MAX: "0",
        MARKET_EXPIRY_INTERVAL_MS: "200",
        AUCTION_EXTENSION_MS: "300",
      },
    });
    const sagasDir = cluster.tempDir("sagas");
    const marketDir = cluster.tempDir("market");
    let gateway: Gateway;
    let sagas: NodeProcess;
    let market: NodeProcess;
    let probe: ServiceBroker;
    let ann: Registered; // collection owner
    let bob: Registered; // seller
    let cat: Registered; // bidder, holds the token
    let dan: Registered; // the winning bidder

    const startSagas = (n: number) =>
      cluster.node({
        name: `sagas-${n}`,
        services: ["sagas"],
        env: { DATA_DIR: sagasDir, SAGAS_STEP_TIMEOUT_MS: "20000" },
      });
    const startMarket = (n: number) =>
      cluster.node({ name: `market-${n}`, services: ["market"], env: { DATA_DIR: marketDir } });

    beforeAll(async () => {
      [, , , market, sagas, gateway] = await Promise.all([
        cluster.node({ name: "users", services: ["users"] }),
        cluster.node({ name: "tokens", services: ["tokens"] }),
        cluster.node({ name: "nfts", services: ["nfts"] }),
        startMarket(1),
        startSagas(1),
        cluster.gateway({ env: { READY_SERVICES: "users,tokens,nfts,market,sagas" } }),
      ]);
      probe = await cluster.broker();
      [ann, bob, cat, dan] = await Promise.all(
        ["ann", "bob", "cat", "dan"].map(n => registerUser(gateway.client, n)),
      );
    });

    it("settles exactly once", async () => {
      const c = gateway.client;
      const token = await createToken(c, cat.token, { decimals: 0, initialSupply: String(SUPPLY) });
      const paid = await c.post(
        `/api/tokens/${token.id}/transfers`,
        { to: dan.id, amount: "50000" },
        { token: cat.token },
      );
      expect(paid.status, paid.text).toBe(201);
      const col = await c.post<Collection>(
        "/api/collections",
        { name: "Gavel", symbol: "GVL", royaltyBps: ROYALTY_BPS },
        { token: ann.token },
      );
      const nft = await c.post<Nft>(
        `/api/collections/${col.body.id}/nfts`,
        { to: bob.id, metadata: { name: "Lot" } },
        { token: ann.token },
      );
      const endsAt = Date.now() + 4000;
      const a = await c.post<Auction>(
        "/api/market/auctions",
        {
          nftId: nft.body.id,
          priceTokenId: token.id,
          reservePrice: "1000",
          endsAt: new Date(endsAt).toISOString(),
        },
        { token: bob.token },
      );
      expect(a.status, a.text).toBe(201);
      const bid = (who: Registered, amount: string) =>
        c.post(`/api/market/auctions/${a.body.id}/bids`, { amount }, { token: who.token });
      expect((await bid(cat, "1000")).status).toBe(201);
      expect((await bid(dan, "2000")).status).toBe(201);

      // The end's node dies before the end and is back after it; the NFT's move is held.
      await setFaults(probe, cluster.nodeId("nfts"), `nfts.transferFrom:delay=${HOLD_MS}ms`);
      await sleep(endsAt - 500 - Date.now());
      await market.kill("SIGKILL");
      await sleep(endsAt + 1000 - Date.now());
      market = await startMarket(2);
      await gateway.ready();
      // Its sweep started the settling saga, now waiting on the held move: kill its driver.
      await sleep(1500);
      const heldAt = Date.now();
      await sagas.kill("SIGKILL");
      await setFaults(probe, cluster.nodeId("nfts"), "");
      sagas = await startSagas(2);
      await gateway.ready();

      const get = async () => (await c.get<Auction>(`/api/market/auctions/${a.body.id}`)).body;
      await waitUntil(async () => (await get()).state === "settled", 40_000, 100);
      expect(sagas.lines.some(l => /Saga resumed/.test(l))).toBe(true);
      // Once the dead process's held call has landed too: every unit moved once.
      await sleep(heldAt + HOLD_MS + 1000 - Date.now());
      const done = await get();
      expect(done).toMatchObject({ state: "settled", winnerId: dan.id });
      expect((await c.get<Nft>(`/api/nfts/${nft.body.id}`)).body.ownerId).toBe(dan.id);
      const holders = await allHolders(c, token.id);
      expect(sumAmounts(holders)).toBe(SUPPLY);
      expect(Object.fromEntries(holders.map(h => [h.account, h.amount]))).toEqual({
        [cat.id]: String(SUPPLY - 50_000n),
        [dan.id]: String(50_000n - 2000n),
        [bob.id]: "1800",
        [ann.id]: "200",
      });
      await expectEscrowBalanced({ client: c, broker: probe }, [token.id]);
    }, 90_000);
  },
);
