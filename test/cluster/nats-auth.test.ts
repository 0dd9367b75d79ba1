import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "nats";
import { registerUser } from "../helpers/http";
import { clusterDown, useCluster, waitUntil, type Gateway } from "../helpers/cluster";
import { startNatsServer, type NatsServer } from "../helpers/faults";
import { createToken, type TransferBody } from "../helpers/tokens";

/**
 * A NATS server that takes only clients with the password, as compose and k8s run it:
 * the nodes join it with the credentials in TRANSPORTER and CHANNELS_URL (the channels
 * adapter needs them split out of the URL), events flow through JetStream into the
 * catalog, the streams keep events for CHANNELS_MAX_AGE_MS, and a node with a wrong
 * password gets nowhere.
 */

const PASSWORD = "s3cret-for-tests";

describe.skipIf(clusterDown())("NATS with a password", () => {
  const cluster = useCluster("natsauth");
  const store = cluster.tempDir("natsauth-js");
  let server: NatsServer;
  let port: number;
  let gateway: Gateway;
  const url = (pass: string) => `nats://mintmesh:${pass}@127.0.0.1:${port}`;

  beforeAll(async () => {
    server = await startNatsServer({
      storeDir: store,
      args: ["--user", "mintmesh", "--pass", PASSWORD],
      connect: { user: "mintmesh", pass: PASSWORD },
    });
    port = server.port;
    const env = { TRANSPORTER: url(PASSWORD), CHANNELS_URL: url(PASSWORD) };
    [, gateway] = await Promise.all([
      cluster.node({
        name: "ledger",
        services: ["users", "tokens", "catalog"],
        env: { ...env, DATA_DIR: ":memory:" },
      }),
      cluster.gateway({
        env: { ...env, READY_SERVICES: "users,tokens,catalog", RATE_LIMIT_MAX: "0" },
      }),
    ]);
  });

  afterAll(async () => {
    await server?.kill();
  });

  it("carries calls and durable events between nodes that have the password", async () => {
    const alice = await registerUser(gateway.client, "alice");
    const bob = await registerUser(gateway.client, "bob");
    const token = await createToken(gateway.client, alice.token, { initialSupply: "100" });
    const sent = await gateway.client.post<TransferBody>(
      `/api/tokens/${token.id}/transfers`,
      { to: bob.id, amount: "7" },
      { token: alice.token },
    );
    expect(sent.status).toBe(201);
    // The catalog counts it from the tokens.transferred stream: JetStream with the password.
    await waitUntil(async () => {
      const res = await gateway.client.get<{ stats: { transfers: number } }>(
        `/api/tokens/${token.id}`,
      );
      return res.body.stats?.transfers === 1;
    }, 15_000);

    const nc = await connect({ servers: `127.0.0.1:${port}`, user: "mintmesh", pass: PASSWORD });
    try {
      const jsm = await nc.jetstreamManager();
      const info = await jsm.streams.info(`${cluster.namespace}_tokens_transferred`);
      expect(info.config.max_age).toBe(3 * 24 * 3600 * 1e9); // CHANNELS_MAX_AGE_MS, in ns
    } finally {
      await nc.close();
    }
  });

  it("turns away a node with a wrong password", async () => {
    const wrong = url("wrong");
    const intruder = await cluster.node({
      name: "intruder",
      services: ["users"],
      env: { TRANSPORTER: wrong, CHANNELS_URL: wrong, DATA_DIR: ":memory:" },
      readyPattern: /Connection is failed/,
    });
    // It keeps trying, and never joins: the cluster does not see it.
    await new Promise(r => setTimeout(r, 3000));
    expect(intruder.lines.some(l => l.includes("started successfully"))).toBe(false);
    const ready = await gateway.client.get("/health/ready");
    expect(ready.status).toBe(200);
  });
});
