import { randomBytes } from "node:crypto";
import path from "node:path";
import { ServiceBroker, type BrokerOptions } from "moleculer";
import { NATS_URL, closedLoop, percentile } from "./common";
import { SECONDS } from "./load";
import { cleanup, spawnChild, waitLine } from "./procs";
import { report, runMain, type Row } from "./report";

/**
 * An action's round trip over NATS beside the floor under it: broker.call from this
 * process to a trivial action on another node (a child process with the platform's own
 * broker options: JSON serializer, validator, middlewares), and the same request/reply
 * with the nats package alone (another child answering on a subject), same server, same
 * payload. Twice each: one call at a time (latency: p50, p99), then RTT_IN_FLIGHT calls
 * in flight for BENCH_SECONDS (throughput).
 *
 * Goal (issue 15): p50 of broker.call ≤ 2× p50 of the raw request.
 *
 * env: BENCH_RTT_CALLS (2000 sequential calls each), BENCH_RTT_IN_FLIGHT (100), BENCH_SECONDS.
 */

const CALLS = Number(process.env.BENCH_RTT_CALLS ?? 2000);
const IN_FLIGHT = Number(process.env.BENCH_RTT_IN_FLIGHT ?? 100);
const SERVER = path.join(__dirname, "anchor-server.js");
const BENCH = "rtt";

interface Figures {
  rate: number;
  p50: number;
  p99: number;
}

/** `n` calls one after another. */
async function sequential(call: () => Promise<unknown>, n: number): Promise<Figures> {
  const times: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    times.push(performance.now() - t);
  }
  const elapsed = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  return { rate: n / elapsed, p50: percentile(times, 0.5), p99: percentile(times, 0.99) };
}

/** IN_FLIGHT loops calling for `seconds`. */
async function flood(call: () => Promise<unknown>, seconds: number): Promise<Figures> {
  const { times, elapsed } = await closedLoop(IN_FLIGHT, seconds, () => call().then(() => true));
  return {
    rate: times.length / elapsed,
    p50: percentile(times, 0.5),
    p99: percentile(times, 0.99),
  };
}

async function main(): Promise<void> {
  const ns = `bench-rtt-${randomBytes(3).toString("hex")}`;
  const env = { ...process.env, NAMESPACE: ns, NATS_URL, LOG_LEVEL: "warn" };
  const echo = spawnChild("echo", [SERVER, "echo"], {
    ...env,
    TRANSPORTER: NATS_URL,
    NODE_ID: `echo-${ns}`,
    // The platform's options without what a bench has no use for.
    CHANNELS_URL: "",
    REDIS_URL: "",
    METRICS_PORT: "",
    HEALTH_PORT: "",
  });
  const raw = spawnChild("nats-echo", [SERVER, "nats-echo"], env);
  await Promise.all([waitLine(echo, /READY/), waitLine(raw, /READY/)]);

  // The caller: the platform's broker options too (dist/moleculer.config.js), in this process.
  const { default: config } = await import("../moleculer.config");
  const broker = new ServiceBroker({
    ...config,
    namespace: ns,
    nodeID: `caller-${ns}`,
    transporter: NATS_URL as BrokerOptions["transporter"],
    logger: false,
    metrics: false,
    tracing: false,
  });
  const { connect } = await import("nats");
  const nc = await connect({ servers: new URL(NATS_URL).host });
  try {
    await broker.start();
    await broker.waitForServices(["bench"], 30_000);
    const params = { id: "tok_bench" };
    const payload = new TextEncoder().encode(JSON.stringify(params));
    const viaBroker = () => broker.call("bench.echo", params);
    const viaNats = async () =>
      JSON.parse(
        new TextDecoder().decode((await nc.request(`${ns}.echo`, payload, { timeout: 3000 })).data),
      ) as unknown;

    // Warm-up: JIT, connections, the registry's endpoints.
    await sequential(viaBroker, 500);
    await sequential(viaNats, 500);
    console.log(`rtt: ${CALLS} calls one at a time, then ${IN_FLIGHT} in flight for ${SECONDS} s…`);
    const seqBroker = await sequential(viaBroker, CALLS);
    const seqRaw = await sequential(viaNats, CALLS);
    const floodBroker = await flood(viaBroker, SECONDS);
    const floodRaw = await flood(viaNats, SECONDS);

    const p50Ratio = seqBroker.p50 / seqRaw.p50;
    const row = (name: string, f: Figures): Row => ({
      bench: BENCH,
      case: name,
      value: f.rate,
      unit: "ops/s",
      p50: f.p50,
      p99: f.p99,
    });
    report(BENCH, [
      {
        ...row("i rtt broker.call, 1 in flight", seqBroker),
        anchor: "raw NATS",
        ratio: p50Ratio,
        compare: `p50 ${p50Ratio.toFixed(2)}× raw`,
        goal: "p50 ≤ 2× raw NATS",
        met: p50Ratio <= 2,
      },
      row("i rtt raw NATS request, 1 in flight", seqRaw),
      {
        ...row(`i flood broker.call, ${IN_FLIGHT} in flight`, floodBroker),
        anchor: "raw NATS",
        ratio: floodBroker.rate / floodRaw.rate,
      },
      row(`i flood raw NATS, ${IN_FLIGHT} in flight`, floodRaw),
    ]);
  } finally {
    await nc.close();
    await broker.stop();
  }
}

if (require.main === module) runMain(main, cleanup);
