import http from "node:http";
import { ServiceBroker, type BrokerOptions } from "moleculer";
import { freePort, NATS_URL, percentile } from "./common";
import {
  createToken,
  register,
  startPlatform,
  transfer,
  waitTransfersShown,
  type BenchUser,
} from "./platform";
import { cleanup } from "./procs";
import { report, runMain } from "./report";

/**
 * Events end to end: tokens' outbox → JetStream → catalog's read model, with api, users,
 * tokens and catalog each a node over NATS. Transfers are offered at a steady RATE per
 * second for BENCH_EVENTS_SECONDS (open loop: sent on schedule whether or not earlier
 * ones have answered, at most MAX_IN_FLIGHT at once) while a probe broker in this process
 * asks catalog.get every POLL_MS, past the cache (`$cache: false`), how many transfers
 * the read model counts.
 *
 * Lag of a transfer: from its 201 to the first poll whose count includes it, counting the
 * k-th acknowledged transfer as seen once the count reaches k (the outbox publishes in
 * commit order, so this is close; it over-states lag by up to POLL_MS plus a call).
 * The `mintmesh.readmodel.lag` metric (issue 13), when the catalog node exports it on
 * METRICS_PORT, is printed beside it.
 *
 * Goal (issue 15): sustained 1,000 transfers/s with read-model lag p99 < 100 ms.
 *
 * env: BENCH_EVENTS_RATE (1000), BENCH_EVENTS_SECONDS (10), BENCH_EVENTS_POLL_MS (10).
 */

const BENCH = "events";
const RATE = Number(process.env.BENCH_EVENTS_RATE ?? 1000);
const SECONDS = Number(process.env.BENCH_EVENTS_SECONDS ?? 10);
const POLL_MS = Number(process.env.BENCH_EVENTS_POLL_MS ?? 10);
const SENDERS = 50;
const MAX_IN_FLIGHT = 1000;
const TICK_MS = 10;

async function main(): Promise<void> {
  const metricsPort = await freePort();
  const p = await startPlatform({
    mode: "nats",
    services: ["users", "tokens", "catalog", "api"],
    nodeEnv: { catalog: { METRICS_PORT: String(metricsPort) } },
  });
  const { base } = p;
  const creator = await register(base, "events-creator");
  // One at a time: users hashes passwords with scrypt and sheds a burst of them (503).
  const senders: BenchUser[] = [];
  for (let i = 0; i < SENDERS; i++) senders.push(await register(base, `events-${i}`));
  const tokenId = await createToken(base, creator);
  for (const s of senders) await transfer(base, tokenId, creator, s.id, String(10n ** 20n));
  await waitTransfersShown(base, tokenId, SENDERS, 60_000);

  const probe = new ServiceBroker({
    namespace: p.namespace,
    nodeID: `probe-${p.namespace}`,
    transporter: NATS_URL as BrokerOptions["transporter"],
    logger: false,
  });
  await probe.start();
  await probe.waitForServices(["catalog"], 30_000);
  const count = async () =>
    (
      await probe.call<{ stats: { transfers: number } }, { id: string }>(
        "catalog.get",
        { id: tokenId },
        { meta: { $cache: false } },
      )
    ).stats.transfers;
  const baseline = await count();

  // Load: RATE/s in ticks of TICK_MS, open loop.
  const agent = new http.Agent({ keepAlive: true, maxSockets: MAX_IN_FLIGHT });
  const acks: number[] = [];
  const latencies: number[] = [];
  let failed = 0;
  let skipped = 0;
  let inFlight = 0;
  let seq = 0;
  const post = (from: BenchUser, to: string) =>
    new Promise<number>(resolve => {
      const body = JSON.stringify({ to, amount: "1" });
      const req = http.request(
        `${base}/api/tokens/${tokenId}/transfers`,
        {
          method: "POST",
          agent,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            authorization: `Bearer ${from.token}`,
          },
        },
        res => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", () => resolve(0));
      req.end(body);
    });
  const sendOne = async () => {
    const i = seq++;
    const from = senders[i % SENDERS];
    const to = senders[(i + 1) % SENDERS];
    inFlight++;
    const t = performance.now();
    const status = await post(from, to.id);
    inFlight--;
    if (status === 201) {
      acks.push(performance.now());
      latencies.push(performance.now() - t);
    } else failed++;
  };

  const polls: Array<{ at: number; count: number }> = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const c = await count().catch(() => -1);
      if (c >= 0) polls.push({ at: performance.now(), count: c - baseline });
      await new Promise(r => setTimeout(r, POLL_MS));
    }
  })();

  console.log(`events: ${RATE} transfers/s offered for ${SECONDS} s…`);
  const pending: Array<Promise<void>> = [];
  const t0 = performance.now();
  const perTick = (RATE * TICK_MS) / 1000;
  for (let tick = 0; performance.now() - t0 < SECONDS * 1000; tick++) {
    const due = Math.floor((tick + 1) * perTick) - Math.floor(tick * perTick);
    for (let k = 0; k < due; k++) {
      if (inFlight >= MAX_IN_FLIGHT) skipped++;
      else pending.push(sendOne());
    }
    const next = t0 + (tick + 1) * TICK_MS;
    await new Promise(r => setTimeout(r, Math.max(0, next - performance.now())));
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - t0) / 1000;
  // Wait for the read model to count every acknowledged transfer (or give up after 30 s).
  const until = performance.now() + 30_000;
  while ((polls.at(-1)?.count ?? 0) < acks.length && performance.now() < until)
    await new Promise(r => setTimeout(r, 50));
  polling = false;
  await poller;
  agent.destroy();

  // The k-th acknowledged transfer is seen at the first poll counting at least k + 1.
  const lags: number[] = [];
  let k = 0;
  for (const poll of polls) {
    while (k < acks.length && k < poll.count) {
      lags.push(Math.max(0, poll.at - acks[k]));
      k++;
    }
  }
  const unseen = acks.length - k;
  lags.sort((a, b) => a - b);
  latencies.sort((a, b) => a - b);

  const metrics = await fetchLagMetric(metricsPort);
  await probe.stop();
  await p.stop();

  const acked = acks.length / elapsed;
  const lagP99 = percentile(lags, 0.99);
  const notes = [
    failed ? `${failed} transfers not 201` : "",
    skipped ? `${skipped} not sent (${MAX_IN_FLIGHT} in flight)` : "",
    unseen ? `${unseen} never counted by the catalog within 30 s` : "",
    metrics,
  ].filter(Boolean);
  report(BENCH, [
    {
      bench: BENCH,
      case: `j transfers acknowledged (${RATE}/s offered)`,
      value: acked,
      unit: "ops/s",
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      goal: `≥ ${(RATE * 0.95).toLocaleString("en-US")}/s sustained`,
      met: acked >= RATE * 0.95,
    },
    {
      bench: BENCH,
      case: "j read-model lag (outbox → JetStream → catalog)",
      value: lagP99,
      unit: "ms",
      p50: percentile(lags, 0.5),
      p99: lagP99,
      goal: "p99 < 100 ms",
      met: lagP99 < 100 && unseen === 0,
      note: `polled every ${POLL_MS} ms past the cache${notes.length ? "; " + notes.join("; ") : ""}`,
    },
  ]);
}

/**
 * The catalog's own lag histogram (`mintmesh.readmodel.lag`, issue 13) from its Prometheus
 * /metrics, as "metric p50 ≤ x ms, p99 ≤ y ms" (bucket bounds, all consumers together);
 * an empty string when the build does not export it.
 */
async function fetchLagMetric(port: number): Promise<string> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then(
    r => r.text(),
    () => "",
  );
  const buckets = new Map<number, number>();
  for (const m of text.matchAll(
    /^mintmesh_readmodel_lag_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$/gm,
  ))
    if (m[1] !== "+Inf") buckets.set(Number(m[1]), (buckets.get(Number(m[1])) ?? 0) + Number(m[2]));
  let total = 0;
  for (const m of text.matchAll(/^mintmesh_readmodel_lag_count(?:\{[^}]*\})? (\S+)$/gm))
    total += Number(m[1]);
  if (buckets.size === 0 || total === 0) return "";
  // Moleculer also writes the quantiles of its sliding window: closer than bucket bounds.
  const quantile = (q: string) => {
    const values = [
      ...text.matchAll(
        new RegExp(`^mintmesh_readmodel_lag\\{[^}]*quantile="${q}"[^}]*\\} (\\S+)$`, "gm"),
      ),
    ].map(m => Number(m[1]));
    return values.length ? `${(Math.max(...values) * 1000).toFixed(1)} ms` : undefined;
  };
  const bounds = [...buckets.keys()].sort((x, y) => x - y);
  const bound = (q: number) => {
    const le = bounds.find(b => (buckets.get(b) ?? 0) >= q * total);
    return le === undefined ? "> the last bucket" : `≤ ${le * 1000} ms`;
  };
  const p50 = quantile("0.5") ?? bound(0.5);
  const p99 = quantile("0.99") ?? bound(0.99);
  return `the catalog's mintmesh.readmodel.lag (${total} events): p50 ${p50}, p99 ${p99}`;
}

if (require.main === module) runMain(main, cleanup);
