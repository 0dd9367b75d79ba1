import { beforeAll, describe, expect, it } from "vitest";
import type { ServiceBroker } from "moleculer";
import { registerUser, type Registered } from "../helpers/http";
import { clusterDown, useCluster, waitUntil } from "../helpers/cluster";
import type { Gateway, NodeProcess } from "../helpers/cluster";
import { setFaults, sleep } from "../helpers/resilience";
import { allHolders, sumAmounts, uniqueSymbol, type TokenBody } from "../helpers/tokens";
import type { Saga } from "../../lib/sagas/saga-log";
import type { Pool } from "../../lib/dex/liquidity-pools";

/**
 * The sagas process is SIGKILLed in the middle of a launch, over the real NATS, each
 * service in a process of its own: once right after the first step (the second held by
 * a FAULTS delay on the dex node), once while a compensation is out (marketing failing,
 * the liquidity's return held). Started again on the same NeDB files, it takes the saga
 * up where its log says and ends it (`completed`, `compensated`), while the call the dead
 * process left behind lands late: the ledger stays consistent and the pool holds the
 * liquidity exactly once.
 */

const SUPPLY = 1_000_000n;
const LIQUIDITY = 300_000n;
/**
 * How long the held call waits on its node: past the gateway's wait (SAGAS_WAIT_MS, 2 s),
 * so the launch answers 202, and past the restart, so the new process's call comes first.
 */
const HOLD_MS = 6000;

describe.skipIf(clusterDown())("launch sagas survive a SIGKILL of the sagas process", () => {
  // Fault control on every node, so a test can hold or fail one action at a time.
  const cluster = useCluster("launch", { env: { FAULTS_CONTROL: "true", RATE_LIMIT_MAX: "0" } });
  const sagasDir = cluster.tempDir("sagas");
  let gateway: Gateway;
  let sagas: NodeProcess;
  let probe: ServiceBroker;
  let ann: Registered;
  let restarts = 0;

  const startSagas = () =>
    cluster.node({
      // A new node id each time, as a restarted pod gets; the same files.
      name: restarts === 0 ? "sagas" : `sagas-${restarts}`,
      services: ["sagas"],
      // Calls outlive the hold: a call past its timeout would be skipped by the callee's
      // own calls (Moleculer's distributed timeout), and the late call must really land.
      env: { DATA_DIR: sagasDir, SAGAS_STEP_TIMEOUT_MS: "20000" },
    });
  const faults = (node: string, spec: string) => setFaults(probe, cluster.nodeId(node), spec);

  beforeAll(async () => {
    [, , , , sagas, gateway] = await Promise.all([
      cluster.node({ name: "users", services: ["users"] }),
      cluster.node({ name: "tokens", services: ["tokens"] }),
      cluster.node({ name: "dex", services: ["dex"] }),
      cluster.node({ name: "marketing", services: ["marketing"] }),
      startSagas(),
      cluster.gateway({ env: { READY_SERVICES: "users,tokens,dex,marketing,sagas" } }),
    ]);
    probe = await cluster.broker();
    ann = await registerUser(gateway.client, "ann");
  });

  const launch = async (symbol = uniqueSymbol("K")) => {
    const res = await gateway.client.post<Saga>(
      "/api/launches",
      {
        token: { name: "Crash", symbol, decimals: 0, initialSupply: String(SUPPLY) },
        liquidity: { amount: String(LIQUIDITY) },
      },
      { token: ann.token },
    );
    expect(res.status).toBe(202); // held: still running when the answer was due
    return res.body;
  };
  const saga = async (id: string) =>
    (await gateway.client.get<Saga>(`/api/launches/${id}`, { token: ann.token })).body;
  const until = async (id: string, ok: (s: Saga) => boolean, ms = 30_000) => {
    await waitUntil(async () => ok(await saga(id)), ms, 100);
    return saga(id);
  };

  /**
   * SIGKILL, then the same files under a new node id; resolves once the gateway sees it.
   * The held call stays held; the faults are cleared first, so the new process's call of
   * the same step lands before it.
   */
  const killAndRestart = async () => {
    await sagas.kill("SIGKILL");
    await faults("dex", "");
    restarts++;
    sagas = await startSagas();
    await gateway.ready();
  };

  it("completes a launch whose sagas process died right after its first step", async () => {
    await faults("dex", `dex.addLiquidity:delay=${HOLD_MS}ms`);
    const started = await launch();
    const held = await until(started.id, s => s.steps[1].state === "running");
    expect(held.steps[0].state).toBe("done");
    const tokenId = (held.steps[0].result as TokenBody).id;

    const heldAt = Date.now();
    await killAndRestart();
    const done = await until(started.id, s => s.state === "completed");
    expect(done.steps.map(s => s.state)).toEqual(["done", "done", "done"]);
    expect(Date.now() - heldAt).toBeLessThan(HOLD_MS); // the held call has not landed yet

    // Once the dead process's call has landed too, the ledger holds the liquidity once.
    await sleep(heldAt + HOLD_MS + 1000 - Date.now());
    const holders = await allHolders(gateway.client, tokenId);
    expect(sumAmounts(holders)).toBe(SUPPLY);
    expect(holders).toEqual([
      { account: ann.id, amount: String(SUPPLY - LIQUIDITY) },
      { account: `pool_${tokenId}`, amount: String(LIQUIDITY) },
    ]);
    const pool = await gateway.client.get<Pool>(`/api/pools/${tokenId}`);
    expect(pool.body).toMatchObject({ reserve: String(LIQUIDITY), providerId: ann.id });
    expect(sagas.lines.some(l => /Saga resumed/.test(l))).toBe(true);
  });

  it("ends compensated when its sagas process died while undoing the liquidity", async () => {
    const before = await gateway.client.get("/api/me/balances?limit=100", { token: ann.token });
    await faults("marketing", "marketing.activate:abort=500");
    await faults("dex", `dex.removeLiquidity:delay=${HOLD_MS}ms`);
    const symbol = uniqueSymbol("C");
    const started = await launch(symbol);
    const held = await until(started.id, s => s.steps[1].state === "compensating");
    expect(held.state).toBe("compensating");
    const tokenId = (held.steps[0].result as TokenBody).id;

    const heldAt = Date.now();
    await killAndRestart();
    const done = await until(started.id, s => s.state === "compensated");
    expect(done.steps.map(s => s.state)).toEqual(["compensated", "compensated", "compensated"]);
    expect(Date.now() - heldAt).toBeLessThan(HOLD_MS);
    await faults("marketing", "");

    // Once the held return has landed too: the token is gone and the creator as before.
    await sleep(heldAt + HOLD_MS + 1000 - Date.now());
    expect((await gateway.client.get(`/api/tokens/${tokenId}/holders`)).status).toBe(404);
    expect((await gateway.client.get(`/api/pools/${tokenId}`)).status).toBe(404);
    const after = await gateway.client.get("/api/me/balances?limit=100", { token: ann.token });
    expect(after.body).toEqual(before.body);
    const again = await gateway.client.post(
      "/api/tokens",
      { name: "Again", symbol, decimals: 0, initialSupply: "1" },
      { token: ann.token },
    );
    expect(again.status).toBe(201);
  });
});
