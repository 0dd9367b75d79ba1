import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { GATEWAY_NODE_FLAGS, SERVICE_START_ORDER, answers, runnerArgs } from "./runner-args";

/**
 * `npm run cluster`: the whole platform as a local cluster, for people without
 * Docker. Every service runs in a process of its own, started exactly like
 * `npm run serve` (moleculer-runner with SERVICES=<name>), all joined over the real
 * NATS server and sharing the real Redis:
 *
 *   - the gateway (api) on PORT, and a replica of it on PORT+1;
 *   - a replica of each service that can have one without MongoDB: those without
 *     data (catalog.v2) and catalog, whose replica builds a complete read model of its
 *     own (own NeDB tree, own consumer group);
 *   - the others (users, tokens, analytics, dex, marketing, sagas, …) once each: NeDB
 *     files are single-writer (for sagas: one process drives its saga log), and
 *     analytics' one consumer group would split the events between two NeDB copies.
 *     With MONGO_URI set every service gets a replica, as in production: sagas replicas
 *     share the log and take each other's sagas over by lease.
 *
 * Only services already compiled to dist/services/<name>.service.js are started.
 * Each child's output is prefixed with its name; SIGINT/SIGTERM go to every child,
 * and the script exits once all of them have (non-zero if any failed).
 *
 * Env: TRANSPORTER, REDIS_URL, CHANNELS_URL, NAMESPACE, PORT, DATA_DIR, MONGO_URI as
 * for one node; CLUSTER_SERVICES=api,users limits which services start. ADMIN_EMAILS (as
 * every other variable) reaches every child: with it the gateways serve the operator page
 * on PORT/ops and PORT+1/ops. METRICS_PORT and HEALTH_PORT, when set, are the first of a
 * range: the children get one port each, in start order (one port for all would collide).
 */

const ROOT = path.resolve(__dirname, "../..");
const SERVICE_DIR = path.join(ROOT, "dist/services");

/**
 * Env of a second copy of a service on the embedded store (its files are one process's),
 * for those where one is safe; null: none.
 * (On MongoDB every replica shares the database and consumer group: always safe.)
 */
function embeddedReplicaEnv(service: string): Record<string, string> | null {
  if (service === "api" || service.includes(".")) return {}; // no data: versioned canaries too
  if (service === "catalog") return { CATALOG_GROUP: "catalog-2" };
  return null;
}

interface Plan {
  name: string;
  service: string;
  env: Record<string, string>;
}

interface Child {
  plan: Plan;
  proc: ChildProcess;
  code?: number | null;
}

const env = (name: string, fallback: string): string => process.env[name] || fallback;

function log(line: string): void {
  process.stdout.write(`${label("cluster")} ${line}\n`);
}

let labelWidth = "cluster".length;
function label(name: string): string {
  return `[${name.padEnd(labelWidth)}]`;
}

function servicesToRun(): string[] {
  const compiled = fs.existsSync(SERVICE_DIR)
    ? fs
        .readdirSync(SERVICE_DIR)
        .filter(f => f.endsWith(".service.js"))
        .map(f => f.slice(0, -".service.js".length))
    : [];
  const wanted = (process.env.CLUSTER_SERVICES ?? "")
    .split(",")
    .map(s => s.trim())
    .filter(Boolean);
  for (const w of wanted)
    if (!compiled.includes(w)) log(`CLUSTER_SERVICES names "${w}", which is not compiled: skipped`);
  const chosen = wanted.length ? compiled.filter(s => wanted.includes(s)) : compiled;
  const rank = (s: string) => {
    const i = SERVICE_START_ORDER.indexOf(s.split(".")[0]);
    return i >= 0 ? i : SERVICE_START_ORDER.length - 1.5;
  };
  return chosen.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function plan(services: string[]): Plan[] {
  const port = Number(env("PORT", "3000"));
  const dataDirEnv = env("DATA_DIR", path.join(ROOT, "data"));
  // ":memory:" is the db mixin's in-memory mode, not a path.
  const inMemory = dataDirEnv === ":memory:";
  const dataDir = inMemory ? dataDirEnv : path.resolve(dataDirEnv);
  const mongo = Boolean(process.env.MONGO_URI);
  // Registry names: "catalog.v2" registers as catalog (version 2).
  const others = [...new Set(services.filter(s => s !== "api").map(s => s.split(".")[0]))];
  const plans: Plan[] = [];
  for (const service of services) {
    // DATA_DIR/<service> is already the service's own; a replica gets a tree of its own.
    const base: Record<string, string> = { DATA_DIR: dataDir };
    if (service === "api") {
      base.PORT = String(port);
      // Ready once every service this cluster runs is reachable (not ones not yet written).
      if (!process.env.READY_SERVICES) base.READY_SERVICES = others.join(",");
    }
    plans.push({ name: service, service, env: base });
    const replicaEnv = mongo ? {} : embeddedReplicaEnv(service);
    if (replicaEnv) {
      const replica: Record<string, string> = {
        ...base,
        DATA_DIR: inMemory ? dataDir : path.join(dataDir, "replica-2"),
        ...replicaEnv,
      };
      if (service === "api") replica.PORT = String(port + 1);
      plans.push({ name: `${service}-2`, service, env: replica });
    }
  }
  // One port each from METRICS_PORT / HEALTH_PORT on (unset: none, as for one node).
  for (const variable of ["METRICS_PORT", "HEALTH_PORT"]) {
    const first = Number(process.env[variable]);
    if (!process.env[variable] || !Number.isInteger(first) || first <= 0) continue;
    plans.forEach((p, i) => (p.env[variable] = String(first + i)));
  }
  return plans;
}

/**
 * Says once when the cluster serves: every gateway's /health/ready answers 200, which
 * means it sees a node for each service it routes to. Log lines can't tell (LOG_LEVEL).
 */
async function announceReady(plans: Plan[], stopping: () => boolean): Promise<void> {
  const ports = plans.filter(p => p.service === "api").map(p => p.env.PORT);
  if (ports.length === 0) return;
  const ready = async (port: string) => {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health/ready`);
      await res.arrayBuffer(); // frees the connection
      return res.status === 200;
    } catch {
      return false;
    }
  };
  const since = Date.now();
  while (!stopping()) {
    if ((await Promise.all(ports.map(ready))).every(Boolean)) {
      log(
        `ready in ${((Date.now() - since) / 1000).toFixed(1)} s: gateway on ` +
          ports.map(p => `http://127.0.0.1:${p}`).join(" and ") +
          "; `npm run repl` opens a REPL on the cluster",
      );
      log(
        process.env.ADMIN_EMAILS
          ? `operator page: http://127.0.0.1:${ports[0]}/ops (log in as one of ADMIN_EMAILS)`
          : "operator page off: set ADMIN_EMAILS=you@example.com to serve it on /ops",
      );
      return;
    }
    await new Promise(r => setTimeout(r, 500));
  }
}

function main(): void {
  const transporter = env("TRANSPORTER", "nats://127.0.0.1:4222");
  const redisUrl = env("REDIS_URL", "redis://127.0.0.1:6379");
  // Durable events on JetStream of the same NATS server.
  const channelsUrl = env("CHANNELS_URL", transporter);
  const namespace = env("NAMESPACE", "mintmesh");

  const services = servicesToRun();
  if (services.length === 0) {
    log(`no compiled service in ${SERVICE_DIR}: run \`npm run build\` first`);
    process.exit(1);
  }
  const plans = plan(services);
  labelWidth = Math.max(7, ...plans.map(p => p.name.length));

  void (async () => {
    for (const [what, url] of [
      ["NATS", transporter],
      ["Redis", redisUrl],
    ] as const) {
      if (!(await answers(url))) {
        log(
          `nothing answers at ${url} (${what}). Start it (e.g. \`nats-server -js\`, ` +
            "`redis-server`) or point TRANSPORTER / REDIS_URL at yours.",
        );
        process.exit(1);
      }
    }
    start(plans, { transporter, redisUrl, channelsUrl, namespace });
  })();
}

function start(
  plans: Plan[],
  shared: { transporter: string; redisUrl: string; channelsUrl: string; namespace: string },
): void {
  log(
    `namespace "${shared.namespace}" on ${shared.transporter}: starting ` +
      plans.map(p => p.name).join(", "),
  );
  const children: Child[] = [];
  let stopping = false;
  let firstFailure = 0;

  const maybeExit = () => {
    if (children.every(c => c.code !== undefined)) {
      log(firstFailure ? `stopped; a process failed (exit ${firstFailure})` : "stopped");
      process.exit(firstFailure);
    }
  };

  for (const p of plans) {
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env,
      SERVICEDIR: SERVICE_DIR,
      SERVICES: p.service,
      TRANSPORTER: shared.transporter,
      REDIS_URL: shared.redisUrl,
      CHANNELS_URL: shared.channelsUrl,
      NAMESPACE: shared.namespace,
      NODE_ID: `${p.name}-${os.hostname()}-${process.pid}`,
      ...p.env,
    };
    // The same command as `npm run serve`.
    const proc = spawn(
      process.execPath,
      runnerArgs(ROOT, p.service === "api" ? GATEWAY_NODE_FLAGS : []),
      // Own process group: a terminal's Ctrl+C reaches each child once, through us.
      { cwd: ROOT, env: childEnv, stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    const child: Child = { plan: p, proc };
    children.push(child);
    const ports = ["PORT", "METRICS_PORT", "HEALTH_PORT"]
      .filter(v => p.env[v])
      .map(v => ` ${v}=${p.env[v]}`)
      .join("");
    log(`${p.name}: pid ${proc.pid} (SERVICES=${p.service}${ports})`);

    const prefix = label(p.name);
    const pipe = (stream: NodeJS.ReadableStream, to: NodeJS.WriteStream) => {
      let rest = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        const lines = (rest + chunk).split("\n");
        rest = lines.pop() ?? "";
        for (const line of lines) {
          to.write(`${prefix} ${line}\n`);
        }
      });
      stream.on("end", () => {
        if (rest) to.write(`${prefix} ${rest}\n`);
      });
    };
    pipe(proc.stdout!, process.stdout);
    pipe(proc.stderr!, process.stderr);

    proc.on("exit", (code, signal) => {
      child.code = code ?? 1;
      // Killed by our own signal while stopping is a normal end; anything else failed.
      const failed = code !== 0 && !(stopping && signal);
      if (failed && !firstFailure) firstFailure = code || 1;
      log(
        `${p.name} exited (${signal ?? `code ${code}`})` +
          (failed && !stopping ? ": the others keep running; Ctrl+C stops them" : ""),
      );
      maybeExit();
    });
    proc.on("error", err => log(`${p.name}: ${err.message}`));
  }

  void announceReady(plans, () => stopping);

  let signals = 0;
  const forward = (signal: NodeJS.Signals) => {
    signals += 1;
    stopping = true;
    // A second Ctrl+C does not wait for graceful shutdown.
    const sig: NodeJS.Signals = signals > 1 ? "SIGKILL" : signal;
    log(
      signals > 1
        ? "killing the processes"
        : `${signal}: stopping ${children.filter(c => c.code === undefined).length} processes (again to kill)`,
    );
    for (const c of children) if (c.code === undefined) c.proc.kill(sig);
  };
  process.on("SIGINT", () => forward("SIGINT"));
  process.on("SIGTERM", () => forward("SIGTERM"));
  // If this script dies some other way, its children must not live on unseen.
  process.on("exit", () => {
    for (const c of children) if (c.code === undefined) c.proc.kill("SIGKILL");
  });
}

main();
