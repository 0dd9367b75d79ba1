import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import { registerUser, type Registered } from "../helpers/http";
import { expectEscrowBalanced } from "../helpers/escrow";
import { clusterDown, useCluster, waitUntil } from "../helpers/cluster";
import type { Gateway, NodeProcess } from "../helpers/cluster";
import { setFaults, sleep } from "../helpers/resilience";
import { allHolders, createToken, sumAmounts } from "../helpers/tokens";
import type { Listing } from "../../lib/events/market";
import type { Collection, Nft } from "../../lib/events/nfts";

/**
 * The sagas process is SIGKILLed in the middle of an NFT purchase, over the real NATS,
 * each service in a process of its own: the payments are done and the NFT's move is held
 * by a FAULTS delay on the nfts node. Started again on the same NeDB files, it takes the
 * purchase up where its log says and ends it, while the call the dead process left behind
 * lands late: the NFT has exactly one owner, the buyer, and the buyer's, seller's and
 * collection owner's balances add up to the supply, each moved exactly once.
 */

const SUPPLY = 10_000n;
const PRICE = 1_000n;
const ROYALTY_BPS = 500; // 50 of the price to the collection's owner
/** Past the gateway's wait (SAGAS_WAIT_MS, 2 s), so the buy answers 202, and past the restart. */
const HOLD_MS = 6000;

describe.skipIf(clusterDown())("a purchase survives a SIGKILL of the sagas process", () => {
  const cluster = useCluster("market", { env: { FAULTS_CONTROL: "true", RATE_LIMIT_MAX: "0" } });
  const sagasDir = cluster.tempDir("sagas");
  let gateway: Gateway;
  let sagas: NodeProcess;
  let probe: ServiceBroker;
  let ann: Registered; // collection owner
  let bob: Registered; // seller
  let cat: Registered; // buyer

  const startSagas = (restart = false) =>
    cluster.node({
      name: restart ? "sagas-2" : "sagas",
      services: ["sagas"],
      // Calls outlive the hold, so the late call really lands (see launch-crash.test.ts).
      env: { DATA_DIR: sagasDir, SAGAS_STEP_TIMEOUT_MS: "20000" },
    });

  beforeAll(async () => {
    [, , , , sagas, gateway] = await Promise.all([
      cluster.node({ name: "users", services: ["users"] }),
      cluster.node({ name: "tokens", services: ["tokens"] }),
      cluster.node({ name: "nfts", services: ["nfts"] }),
      cluster.node({ name: "market", services: ["market"] }),
      startSagas(),
      cluster.gateway({ env: { READY_SERVICES: "users,tokens,nfts,market,sagas" } }),
    ]);
    probe = await cluster.broker();
    [ann, bob, cat] = await Promise.all(
      ["ann", "bob", "cat"].map(n => registerUser(gateway.client, n)),
    );
  });

  it("completes a purchase whose sagas process died while the NFT's move was out", async () => {
    const c = gateway.client;
    const token = await createToken(c, cat.token, { decimals: 0, initialSupply: String(SUPPLY) });
    const col = await c.post<Collection>(
      "/api/collections",
      { name: "Crash", symbol: "CRS", royaltyBps: ROYALTY_BPS },
      { token: ann.token },
    );
    const nft = await c.post<Nft>(
      `/api/collections/${col.body.id}/nfts`,
      { to: bob.id, metadata: { name: "Held" } },
      { token: ann.token },
    );
    const listing = await c.post<Listing>(
      "/api/market/listings",
      { nftId: nft.body.id, priceTokenId: token.id, price: String(PRICE) },
      { token: bob.token },
    );
    expect(listing.status, listing.text).toBe(201);

    await setFaults(probe, cluster.nodeId("nfts"), `nfts.transferFrom:delay=${HOLD_MS}ms`);
    const bought = await c.post<{ listing: Listing; sagaId: string }>(
      `/api/market/listings/${listing.body.id}/buy`,
      undefined,
      { token: cat.token },
    );
    expect(bought.status, bought.text).toBe(202); // held: still running when the answer was due
    expect(bought.body.listing.state).toBe("reserved");
    const heldAt = Date.now();

    await sagas.kill("SIGKILL");
    await setFaults(probe, cluster.nodeId("nfts"), "");
    sagas = await startSagas(true);
    await gateway.ready();

    const state = async () =>
      (await c.get<Listing>(`/api/market/listings/${listing.body.id}`)).body.state;
    await waitUntil(async () => (await state()) === "sold", 30_000, 100);
    expect(Date.now() - heldAt).toBeLessThan(HOLD_MS); // the held call has not landed yet
    expect(sagas.lines.some(l => /Saga resumed/.test(l))).toBe(true);

    // Once the dead process's call has landed too: one owner, every unit once.
    await sleep(heldAt + HOLD_MS + 1000 - Date.now());
    expect((await c.get<Nft>(`/api/nfts/${nft.body.id}`)).body).toMatchObject({
      ownerId: cat.id,
      approved: null,
    });
    const ofSeller = await c.get<{ total: number }>(`/api/nfts?owner=${bob.id}`);
    expect(ofSeller.body.total).toBe(0);
    const ofBuyer = await c.get<{ rows: Nft[] }>(`/api/nfts?owner=${cat.id}`);
    expect(ofBuyer.body.rows.map(n => n.id)).toEqual([nft.body.id]);
    const holders = await allHolders(c, token.id);
    expect(sumAmounts(holders)).toBe(SUPPLY);
    const royalty = (PRICE * BigInt(ROYALTY_BPS)) / 10_000n;
    expect(Object.fromEntries(holders.map(h => [h.account, h.amount]))).toEqual({
      [cat.id]: String(SUPPLY - PRICE),
      [bob.id]: String(PRICE - royalty),
      [ann.id]: String(royalty),
    });
    expect(await state()).toBe("sold");
    await expectEscrowBalanced({ client: c, broker: probe }, [token.id]);
  });
});
