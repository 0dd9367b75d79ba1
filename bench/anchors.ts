import path from "node:path";
import { randomBytes } from "node:crypto";
import { freePort, NATS_URL } from "./common";
import { CONNECTIONS, load, type LoadResult } from "./load";
import { cleanup, spawnChild, stopChildren, waitHttp, waitLine, type Child } from "./procs";
import { report, runMain, type Row } from "./report";

/**
 * The anchors of issue 15: what the same GET /api/tokens/:id costs on other stacks, each
 * started here in the same run, each process a child (so two-process anchors split the
 * CPU as real deployments do). All answer the same token JSON (common.ts tokenDoc).
 *
 *   a  bare node:http
 *   b  moleculer-web → trivial local action (one broker, no transporter)
 *   c  moleculer-web gateway node → trivial action on another node over NATS
 *   d  Express + http-proxy → Express service
 *   e  Fastify + @fastify/http-proxy → Fastify service
 *
 * `npm run bench -- anchors` runs all five and prints them beside (a); bench/gateway.ts runs
 * them beside the platform.
 *
 * Anchor l, the transfer route on Fastify + PostgreSQL, is bench/pg-anchor.ts: the
 * transfers case runs it beside h (`npm run bench -- transfers-pg`).
 */

export type AnchorId = "a" | "b" | "c" | "d" | "e";

export const ANCHORS: Record<AnchorId, string> = {
  a: "a bare node:http",
  b: "b moleculer-web → local action",
  c: "c moleculer-web → action over NATS",
  d: "d Express + http-proxy → Express",
  e: "e Fastify + http-proxy → Fastify",
};

const SERVER = path.join(__dirname, "anchor-server.js");

/** A process of the anchor server in `mode`. */
function server(mode: string, env: Record<string, string>): Child {
  return spawnChild(mode, [SERVER, mode], { ...process.env, ...env });
}

/** Starts anchor `id`; resolves with the URL to load and its processes. */
async function start(id: AnchorId): Promise<{ url: string; procs: Child[] }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/api/tokens/tok_bench`;
  const P = String(port);
  let procs: Child[];
  switch (id) {
    case "a":
      procs = [server("bare", { PORT: P })];
      break;
    case "b":
      procs = [server("mweb-local", { PORT: P })];
      break;
    case "c": {
      const ns = `bench-anchor-${randomBytes(3).toString("hex")}`;
      const env = { NATS_URL, NAMESPACE: ns };
      const service = server("mweb-service", { ...env, NODE_ID: `service-${ns}` });
      await waitLine(service, /READY/);
      const gateway = server("mweb-gateway", { ...env, PORT: P, NODE_ID: `gateway-${ns}` });
      procs = [gateway, service];
      await waitLine(gateway, /READY/);
      break;
    }
    case "d":
    case "e": {
      const kind = id === "d" ? "express" : "fastify";
      const up = await freePort();
      const service = server(`${kind}-service`, { PORT: String(up) });
      const gateway = server(`${kind}-gateway`, { PORT: P, UPSTREAM_PORT: String(up) });
      procs = [gateway, service];
      await waitHttp(`http://127.0.0.1:${up}/api/tokens/probe`, [service], 30_000);
      break;
    }
  }
  await waitHttp(url, procs, 30_000);
  return { url, procs };
}

/** A load result as a row of the table. */
export function rateRow(bench: string, name: string, r: LoadResult): Row {
  const errorShare = r.requests > 0 ? r.errors / r.requests : 0;
  return {
    bench,
    case: name,
    value: r.rps,
    unit: "req/s",
    p50: r.p50,
    p99: r.p99,
    ...(errorShare > 0.001
      ? { note: `${r.errors} of ${r.requests} answers were errors (${r.tool})` }
      : {}),
  };
}

/** Starts anchor `id`, loads it, stops it. */
export async function runAnchor(id: AnchorId, bench = "anchors"): Promise<Row> {
  const { url, procs } = await start(id);
  try {
    console.log(`${ANCHORS[id]}: ${CONNECTIONS} connections…`);
    return rateRow(bench, ANCHORS[id], await load({ url }));
  } finally {
    await stopChildren(procs);
  }
}

async function main(): Promise<void> {
  const ids = (process.env.BENCH_ANCHORS ?? "a,b,c,d,e").split(",") as AnchorId[];
  const rows: Row[] = [];
  for (const id of ids) rows.push(await runAnchor(id));
  const bare = rows.find(r => r.case.startsWith("a "));
  for (const r of rows)
    if (bare && r !== bare) Object.assign(r, { anchor: "a", ratio: r.value / bare.value });
  report("anchors", rows);
}

if (require.main === module) runMain(main, cleanup);
