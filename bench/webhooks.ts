import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { BrokerOptions, Service, ServiceBroker, ServiceSchema } from "moleculer";
import { ACTIVITY_EVENTS, type ActivityRow } from "../lib/events/activity";
import type { DeliveryDoc } from "../lib/webhooks/documents";
import type { DbMethods } from "../mixins/db.mixin";
import { percentile } from "./common";
import { install } from "./procs";
import { report } from "./report";

/**
 * Webhook deliveries per second to a local receiver (issue 22): the webhooks service in
 * this process on SQLite files in a fresh temp dir (synced, as in production on one
 * node), fed BENCH_DELIVERIES activity rows on `activity.recorded` (the in-memory channel
 * adapter) for BENCH_ENDPOINTS owners with one endpoint each; the receiver is a plain
 * node:http server in a child process answering 200 to every POST.
 *
 * Measured: from the first row published to the last delivery recorded `delivered`:
 * deliveries/s, and p50/p99 of each delivery's time from queued to delivered (createdAt
 * → deliveredAt, ms resolution). Each delivery is a claim (a conditional write), a
 * signed POST and the result's write.
 *
 * No goal was set by the issue; the figure goes in docs/benchmarks.md.
 *
 * env: BENCH_DELIVERIES (2000), BENCH_ENDPOINTS (10), WEBHOOKS_CONCURRENCY and
 * WEBHOOKS_PER_ENDPOINT as the service reads them.
 */

const DELIVERIES = Number(process.env.BENCH_DELIVERIES ?? 2000);
const ENDPOINTS = Number(process.env.BENCH_ENDPOINTS ?? 10);

/** The receiver: answers 200 to everything, reports its port over IPC. */
const RECEIVER = `
const http = require("node:http");
const server = http.createServer((req, res) => { req.resume(); req.on("end", () => res.end()); });
server.keepAliveTimeout = 60000;
server.listen(0, "127.0.0.1", () => process.send(server.address().port));
`;

async function startReceiver(): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, ["-e", RECEIVER], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", m => resolve(Number(m)));
    child.once("exit", code => reject(new Error(`receiver exited (${code})`)));
  });
  process.on("exit", () => child.kill("SIGKILL"));
  return { url: `http://127.0.0.1:${port}/hook`, stop: () => child.kill("SIGTERM") };
}

type ChannelBroker = ServiceBroker & {
  sendToChannel(channel: string, payload: unknown): Promise<void>;
};

async function main(): Promise<void> {
  install();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-bench-webhooks-"));
  Object.assign(process.env, {
    DATA_DIR: dataDir,
    WEBHOOKS_ALLOW_PRIVATE: "true",
    LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
  });
  const receiver = await startReceiver();
  // Loaded after the env above: the config and the service read it when they load.
  const config = (await import("../moleculer.config")).default as BrokerOptions;
  const { ServiceBroker: Broker } = await import("moleculer");
  const { default: schema } = (await import("../services/webhooks.service")) as unknown as {
    default: ServiceSchema;
  };
  const broker = new Broker({
    ...config,
    transporter: null,
    nodeID: `bench-webhooks-${process.pid}`,
  });
  broker.createService(schema);
  await broker.start();
  try {
    const owners = Array.from({ length: ENDPOINTS }, (_, i) => `usr_bench${i}`);
    for (const id of owners)
      await broker.call(
        "webhooks.create",
        { url: receiver.url, events: ["*"] },
        { meta: { user: { id } } },
      );
    const svc = broker.getLocalService("webhooks") as Service & DbMethods;
    const store = svc.store<DeliveryDoc>("deliveries");

    const t0 = performance.now();
    for (let i = 0; i < DELIVERIES; i++) {
      const row: ActivityRow = {
        id: `act_bench_${i}`,
        cursor: String(i).padStart(12, "0"),
        type: "transfer.in",
        at: new Date().toISOString(),
        actorId: owners[i % owners.length],
        tokenId: "tok_bench",
        data: { amount: "1", from: "someone" },
      };
      await (broker as ChannelBroker).sendToChannel(ACTIVITY_EVENTS.recorded, {
        eventId: `${ACTIVITY_EVENTS.recorded}:${row.id}`,
        type: ACTIVITY_EVENTS.recorded,
        occurredAt: row.at,
        data: { rows: [row] },
      });
    }
    let delivered = 0;
    const deadline = Date.now() + 300_000;
    while (delivered < DELIVERIES && Date.now() < deadline) {
      await new Promise(r => setTimeout(r, 50));
      delivered = await store.count({ state: "delivered" });
    }
    const elapsed = (performance.now() - t0) / 1000;
    const docs = await store.find({ state: "delivered" });
    const times = docs
      .map(d => Date.parse(d.deliveredAt ?? "") - Date.parse(d.createdAt))
      .sort((a, b) => a - b);
    const rate = delivered / elapsed;
    console.log(
      `-- ${DELIVERIES} deliveries to ${ENDPOINTS} endpoints: ${delivered} delivered in ${elapsed.toFixed(2)} s`,
    );
    report("webhooks", [
      {
        bench: "webhooks",
        case: `webhook deliveries embedded (${ENDPOINTS} endpoints, SQLite)`,
        value: rate,
        unit: "ops/s",
        p50: percentile(times, 0.5),
        p99: percentile(times, 0.99),
        goal: "none set: every delivery delivered",
        met: delivered === DELIVERIES,
        ...(delivered < DELIVERIES ? { note: `${DELIVERIES - delivered} not delivered` } : {}),
      },
    ]);
  } finally {
    await broker.stop();
    receiver.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
