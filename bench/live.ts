import http from "node:http";
import { percentile } from "./common";
import { createToken, register, startPlatform, transfer, type BenchUser } from "./platform";
import { cleanup, rssMb } from "./procs";
import { report, runMain, type Row } from "./report";
import { signAccessToken } from "../lib/users/jwt";
import type { ActivityRow } from "../lib/events/activity";

/**
 * The live stream GET /api/me/events, with api, users, tokens and activity each a node over
 * NATS (JetStream channels):
 *
 * m latency: SENDERS users each hold a stream while transfers among them are offered at
 *   RATE per second (open loop) for SECONDS; a row's latency is from its `at` (the
 *   transfer's commit in tokens) to its arrival at the client: tokens' outbox → JetStream →
 *   activity's commit and broadcast → the gateway's activity.list → SSE. Goal: p99 < 100 ms.
 * n 10,000 streams on one gateway (STREAMS, users of 5 streams each, their tokens signed
 *   here with the bench's JWT_SECRET), quiet for PING_ROUNDS pings every PING_MS: the
 *   gateway's RSS (goal < 300 MB) and how late the pings come (the gap between two pings
 *   of a stream beyond PING_MS; goal: on time, p99 < 1 s late).
 *
 * env: BENCH_LIVE_RATE (1000), BENCH_LIVE_SECONDS (10), BENCH_LIVE_STREAMS (10000),
 * BENCH_LIVE_PING_MS (2000), BENCH_LIVE_PING_ROUNDS (5), BENCH_LIVE_ONLY=latency|streams.
 */

const BENCH = "live";
const RATE = Number(process.env.BENCH_LIVE_RATE ?? 1000);
const SECONDS = Number(process.env.BENCH_LIVE_SECONDS ?? 10);
const STREAMS = Number(process.env.BENCH_LIVE_STREAMS ?? 10_000);
const PING_MS = Number(process.env.BENCH_LIVE_PING_MS ?? 2000);
const PING_ROUNDS = Number(process.env.BENCH_LIVE_PING_ROUNDS ?? 5);
const ONLY = process.env.BENCH_LIVE_ONLY ?? "";
const SENDERS = 50;
/** How many of the senders hold a stream (BENCH_LIVE_WATCHERS): the gateway's reads grow with it. */
const WATCHERS = Math.min(SENDERS, Number(process.env.BENCH_LIVE_WATCHERS ?? SENDERS));
const MAX_IN_FLIGHT = 1000;
const TICK_MS = 10;
const SECRET = process.env.JWT_SECRET ?? "bench-secret";
const GATEWAY_HEAP_MB = 384;

/** One open stream: each row (with its arrival) and each ping's arrival, as they come. */
function openStream(
  base: string,
  token: string,
  agent: http.Agent,
  onRow: (row: ActivityRow, at: number) => void,
  onPing: (at: number) => void,
): Promise<http.ClientRequest> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      `${base}/api/me/events`,
      { agent, headers: { authorization: `Bearer ${token}` } },
      res => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`stream: ${res.statusCode}`));
          return;
        }
        let buf = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          const at = Date.now();
          buf += chunk;
          for (let end = buf.indexOf("\n\n"); end >= 0; end = buf.indexOf("\n\n")) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            if (block.startsWith(": ping")) onPing(at);
            const data = /^data: (.*)$/m.exec(block);
            if (data) onRow(JSON.parse(data[1]) as ActivityRow, at);
          }
        });
        res.on("error", () => undefined);
        resolve(req);
      },
    );
    req.on("error", reject);
  });
}

async function latency(base: string): Promise<Row[]> {
  const creator = await register(base, "live-creator");
  const senders: BenchUser[] = [];
  for (let i = 0; i < SENDERS; i++) senders.push(await register(base, `live-${i}`));
  const tokenId = await createToken(base, creator);
  for (const s of senders) await transfer(base, tokenId, creator, s.id, String(10n ** 20n));

  const agent = new http.Agent({ keepAlive: true, maxSockets: SENDERS + MAX_IN_FLIGHT });
  let t0 = Infinity;
  const lags: number[] = [];
  const streams = await Promise.all(
    senders.slice(0, WATCHERS).map(s =>
      openStream(
        base,
        s.token,
        agent,
        (row, at) => {
          const made = Date.parse(row.at);
          // Only the bench's transfers, not the funding before it.
          if (made >= t0) lags.push(at - made);
        },
        () => undefined,
      ),
    ),
  );

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
  let acked = 0;
  let failed = 0;
  let skipped = 0;
  let inFlight = 0;
  let seq = 0;
  const sendOne = async () => {
    const i = seq++;
    inFlight++;
    const status = await post(senders[i % SENDERS], senders[(i + 1) % SENDERS].id);
    inFlight--;
    if (status === 201) acked++;
    else failed++;
  };

  console.log(`live: ${RATE} transfers/s offered for ${SECONDS} s, ${SENDERS} streams…`);
  await new Promise(r => setTimeout(r, 1000)); // the funding rows have arrived
  t0 = Date.now();
  const pending: Array<Promise<void>> = [];
  const start = performance.now();
  const perTick = (RATE * TICK_MS) / 1000;
  for (let tick = 0; performance.now() - start < SECONDS * 1000; tick++) {
    const due = Math.floor((tick + 1) * perTick) - Math.floor(tick * perTick);
    for (let k = 0; k < due; k++) {
      if (inFlight >= MAX_IN_FLIGHT) skipped++;
      else pending.push(sendOne());
    }
    const next = start + (tick + 1) * TICK_MS;
    await new Promise(r => setTimeout(r, Math.max(0, next - performance.now())));
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - start) / 1000;
  // Two rows per transfer (out for the sender, in for the receiver), each to its stream.
  const expected = Math.round((acked * 2 * WATCHERS) / SENDERS);
  const until = Date.now() + 30_000;
  while (lags.length < expected && Date.now() < until) await new Promise(r => setTimeout(r, 50));
  const missing = expected - lags.length;
  for (const s of streams) s.destroy();
  agent.destroy();
  lags.sort((a, b) => a - b);
  const p99 = percentile(lags, 0.99);
  const notes = [
    `${lags.length} rows to ${WATCHERS} streams; ${(acked / elapsed).toFixed(0)} transfers/s acknowledged`,
    failed ? `${failed} transfers not 201` : "",
    skipped ? `${skipped} not sent (${MAX_IN_FLIGHT} in flight)` : "",
    missing > 0 ? `${missing} rows not received within 30 s` : "",
  ].filter(Boolean);
  return [
    {
      bench: BENCH,
      case: `m event → SSE client latency (${RATE} transfers/s offered)`,
      value: p99,
      unit: "ms",
      p50: percentile(lags, 0.5),
      p99,
      goal: "p99 < 100 ms",
      met: p99 < 100 && missing <= 0,
      note: notes.join("; "),
    },
  ];
}

async function manyStreams(base: string, gatewayPid: number): Promise<Row[]> {
  const rssBefore = rssMb(gatewayPid) ?? NaN;
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const pings: number[][] = [];
  const reqs: http.ClientRequest[] = [];
  let refused = 0;
  console.log(`live: opening ${STREAMS} streams on one gateway…`);
  const t0 = performance.now();
  const BATCH = 200;
  for (let i = 0; i < STREAMS; i += BATCH) {
    const opened = await Promise.all(
      Array.from({ length: Math.min(BATCH, STREAMS - i) }, (_, k) => {
        const n = i + k;
        const user = { id: `bench-live-${Math.floor(n / 5)}` };
        const times: number[] = [];
        pings.push(times);
        return openStream(
          base,
          signAccessToken(user, SECRET, "1h"),
          agent,
          () => undefined,
          at => times.push(at),
        ).catch(() => {
          refused++;
          return undefined;
        });
      }),
    );
    for (const r of opened) if (r) reqs.push(r);
  }
  const openSeconds = (performance.now() - t0) / 1000;
  console.log(`live: ${reqs.length} open in ${openSeconds.toFixed(1)} s; ${PING_ROUNDS} pings…`);
  await new Promise(r => setTimeout(r, PING_MS * (PING_ROUNDS + 0.5)));
  const rss = rssMb(gatewayPid) ?? NaN;
  for (const r of reqs) r.destroy();
  agent.destroy();

  const late: number[] = [];
  let missed = 0;
  for (const times of pings) {
    if (times.length < PING_ROUNDS - 1) missed++;
    for (let i = 1; i < times.length; i++)
      late.push(Math.max(0, times[i] - times[i - 1] - PING_MS));
  }
  late.sort((a, b) => a - b);
  const lateP99 = percentile(late, 0.99);
  return [
    {
      bench: BENCH,
      case: `n RSS of one gateway with ${reqs.length.toLocaleString("en-US")} open streams`,
      value: rss,
      unit: "MB",
      goal: "< 300 MB",
      met: rss < 300 && reqs.length === STREAMS,
      note: `${rssBefore.toFixed(0)} MB before; opened in ${openSeconds.toFixed(1)} s${refused ? `; ${refused} refused` : ""}`,
    },
    {
      bench: BENCH,
      case: `n ping lateness (every ${PING_MS} ms, ${reqs.length.toLocaleString("en-US")} streams)`,
      value: lateP99,
      unit: "ms",
      p50: percentile(late, 0.5),
      p99: lateP99,
      goal: "on time (p99 < 1,000 ms late)",
      met: lateP99 < 1000 && missed === 0,
      note: `${late.length} gaps between pings${missed ? `; ${missed} streams missed pings` : ""}`,
    },
  ];
}

async function main(): Promise<void> {
  // Each open stream holds some 15 KB of the gateway's heap: 10,000 do not fit the deployed
  // gateway's 96 MB old space (package.json gateway_node_flags), so this run gives it more.
  process.env.BENCH_NODE_ARGS ??= `--max-old-space-size=${GATEWAY_HEAP_MB}`;
  const p = await startPlatform({
    mode: "nats",
    services: ["users", "tokens", "activity", "api"],
    env: { JWT_SECRET: SECRET },
    nodeEnv: {
      api: {
        LIVE_PING_MS: String(PING_MS),
        LIVE_MAX_STREAMS: String(STREAMS + SENDERS),
        LIVE_READ_TIMEOUT_MS: "10000",
      },
    },
  });
  const gateway = p.nodes.find(n => n.service === "api");
  const rows: Row[] = [];
  if (ONLY !== "streams") rows.push(...(await latency(p.base)));
  if (ONLY !== "latency" && gateway) rows.push(...(await manyStreams(p.base, gateway.child.pid)));
  await p.stop();
  report(BENCH, rows);
}

if (require.main === module) runMain(main, cleanup);
