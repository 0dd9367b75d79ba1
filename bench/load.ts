import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { closedLoop, percentile } from "./common";
import { removeDir, spawnChild, tempDir } from "./procs";

/**
 * HTTP load at a fixed number of connections for a fixed time: wrk (what the issue measured
 * with) when it is installed, else a small keep-alive client in node. Each measured run is
 * preceded by a warm-up run whose figures are dropped (JIT, caches, connection pools).
 *
 * env: BENCH_SECONDS (5) per measured run, BENCH_WARMUP_SECONDS (2), BENCH_CONNECTIONS (50),
 * BENCH_WRK_THREADS (1: wrk's one thread drives far more than these servers answer, and
 * leaves the second core to them), BENCH_LOADGEN=node to use the node client even with wrk.
 */

export const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
export const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
export const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const WRK_THREADS = Number(process.env.BENCH_WRK_THREADS ?? 1);

export interface LoadTarget {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  /** A JSON body, sent as is on every request. */
  body?: string;
}

export interface LoadResult {
  tool: "wrk" | "node";
  requests: number;
  seconds: number;
  /** Requests per second, every status counted (see `errors`). */
  rps: number;
  /** Latency quantiles, ms. */
  p50: number;
  p99: number;
  /** Non-2xx/3xx answers and socket errors. */
  errors: number;
}

let wrkChecked: boolean | undefined;

/** Whether wrk runs here; says once how to get it when it does not. */
export function hasWrk(): boolean {
  if (wrkChecked === undefined) {
    wrkChecked =
      process.env.BENCH_LOADGEN !== "node" &&
      spawnSync("wrk", ["--version"], { stdio: "ignore" }).error === undefined;
    if (!wrkChecked && process.env.BENCH_LOADGEN !== "node")
      console.log(
        "wrk is not installed (Debian/Ubuntu: apt-get install wrk); using the node client, " +
          "which takes more CPU from the servers, so figures are lower than with wrk",
      );
  }
  return wrkChecked;
}

/** Warm-up, then a measured run of `seconds`. */
export async function load(target: LoadTarget, seconds = SECONDS): Promise<LoadResult> {
  if (WARMUP_SECONDS > 0) await loadOnce(target, WARMUP_SECONDS);
  return loadOnce(target, seconds);
}

function loadOnce(target: LoadTarget, seconds: number): Promise<LoadResult> {
  return hasWrk() ? wrk(target, seconds) : nodeLoad(target, seconds);
}

/** A wrk time ("812.00us", "1.20ms", "2.00s", "1.00m") in ms. */
function wrkMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  const scale: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return n * scale[m[2]];
}

/** The figures of wrk's `--latency` output. */
export function parseWrk(out: string, seconds: number): LoadResult {
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const quantile = (q: string) =>
    wrkMs(new RegExp(`^\\s+${q}%\\s+(\\S+)`, "m").exec(out)?.[1] ?? "");
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = socket ? socket.slice(1).reduce((s, n) => s + Number(n), 0) : 0;
  const requests = num(/(\d+) requests in ([\d.]+)(\w+)/);
  const rps = num(/Requests\/sec:\s+([\d.]+)/);
  if (!Number.isFinite(rps)) throw new Error(`wrk printed no Requests/sec:\n${out}`);
  return {
    tool: "wrk",
    requests,
    seconds,
    rps,
    p50: quantile("50"),
    p99: quantile("99"),
    errors: (num(/Non-2xx or 3xx responses: (\d+)/) || 0) + socketErrors,
  };
}

/** Lua long-bracket string: no escaping needed for JSON or header values. */
const lua = (s: string) => `[==[${s}]==]`;

async function wrk(target: LoadTarget, seconds: number): Promise<LoadResult> {
  const args = [
    `-t${WRK_THREADS}`,
    `-c${CONNECTIONS}`,
    `-d${seconds}s`,
    "--latency",
    "--timeout",
    "10s",
  ];
  let dir: string | undefined;
  const headers = { ...target.headers };
  if (target.method && target.method !== "GET") {
    // Method and body need a script; headers go in it too so one place sets the request.
    dir = tempDir("wrk");
    const script = path.join(dir, "request.lua");
    if (target.body !== undefined) headers["Content-Type"] ??= "application/json";
    const lines = [
      `wrk.method = ${lua(target.method)}`,
      ...(target.body !== undefined ? [`wrk.body = ${lua(target.body)}`] : []),
      // The spaces matter: "[[" would open a Lua long string.
      ...Object.entries(headers).map(([k, v]) => `wrk.headers[ ${lua(k)} ] = ${lua(v)}`),
    ];
    fs.writeFileSync(script, lines.join("\n") + "\n");
    args.push("-s", script);
  } else {
    for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  }
  args.push(target.url);
  try {
    // A child of the bench like the servers: a stopped bench stops its load too.
    const child = spawnChild("wrk", args, process.env, "wrk");
    await child.exited;
    await child.stop();
    const out = child.lines.join("\n");
    if (child.proc.exitCode !== 0) throw new Error(`wrk exited ${child.proc.exitCode}:\n${out}`);
    return parseWrk(out, seconds);
  } finally {
    if (dir) removeDir(dir);
  }
}

/**
 * The fallback: CONNECTIONS keep-alive connections, each sending its next request when
 * the last is answered, for `seconds`.
 */
export async function nodeLoad(target: LoadTarget, seconds: number): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const headers: Record<string, string | number> = { ...target.headers };
  if (target.body !== undefined) {
    headers["content-type"] ??= "application/json";
    headers["content-length"] = Buffer.byteLength(target.body);
  }
  const once = () =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(
        target.url,
        { method: target.method ?? "GET", agent, headers },
        res => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", reject);
      req.end(target.body);
    });
  const {
    times: latencies,
    elapsed,
    errors,
  } = await closedLoop(CONNECTIONS, seconds, () =>
    once().then(status => status >= 200 && status < 400),
  );
  agent.destroy();
  return {
    tool: "node",
    requests: latencies.length,
    seconds: elapsed,
    rps: latencies.length / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    errors,
  };
}
