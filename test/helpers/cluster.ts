import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { BrokerOptions, ServiceBroker } from "moleculer";
import { afterAll, beforeAll, inject } from "vitest";
import type { TestProject } from "vitest/node";
import { ApiClient } from "./http";
import { answers, runnerArgs } from "../../bin/runner-args";

/**
 * Real Moleculer nodes for the cluster tier: each is a separate `moleculer-runner`
 * process on the compiled code (run `npm run build` first; `npm test` does), joined
 * over the real NATS server. A unique NAMESPACE per test file keeps clusters apart.
 *
 * A test file starts its cluster with `useCluster()`, which cleans up after the file's
 * tests, inside `describe.skipIf(clusterDown())(…)`: the tier is skipped, with one line
 * from `setup` below, when NATS or Redis does not answer.
 */

export const ROOT = path.resolve(__dirname, "../..");
export const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export interface NodeProcess {
  name: string;
  proc: ChildProcess;
  /** Everything the process printed, line by line. */
  lines: string[];
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

export function uniqueNamespace(prefix = "t"): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

/** The node id startNode gives a node named `name`. */
export const nodeIdOf = (name: string, namespace: string): string => `${name}-${namespace}`;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** A free port whose next port is free too (`npm run cluster` puts a second gateway there). */
export async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await freePort();
    const nextFree = await new Promise<boolean>(resolve => {
      const srv = net.createServer();
      srv.unref();
      srv.once("error", () => resolve(false));
      srv.listen(port + 1, "127.0.0.1", () => srv.close(() => resolve(true)));
    });
    if (nextFree) return port;
  }
}

export interface StartNodeOptions {
  name: string;
  services: string[];
  namespace: string;
  env?: Record<string, string>;
  /** Resolve once this line appears (default: the broker's "started successfully"). */
  readyPattern?: RegExp;
}

export async function startNode(opts: StartNodeOptions): Promise<NodeProcess> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: "test",
    SERVICEDIR: path.join(ROOT, "dist/services"),
    SERVICES: opts.services.join(","),
    TRANSPORTER: NATS_URL,
    NAMESPACE: opts.namespace,
    NODE_ID: nodeIdOf(opts.name, opts.namespace),
    LOG_LEVEL: "info",
    ...opts.env,
  };
  const proc = spawn(process.execPath, runnerArgs(ROOT), {
    cwd: ROOT,
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  const onData = (buf: Buffer) => {
    for (const line of buf.toString().split("\n")) {
      if (!line) continue;
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  };
  proc.stdout.on("data", onData);
  proc.stderr.on("data", onData);
  const exited = new Promise<number | null>(resolve => proc.once("exit", code => resolve(code)));

  const node: NodeProcess = {
    name: opts.name,
    proc,
    lines,
    exited,
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
    waitFor(re: RegExp, timeoutMs = 30_000) {
      const seen = lines.find(l => re.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(
              `${opts.name}: no line matching ${re} in ${timeoutMs} ms.\n${lines.slice(-30).join("\n")}`,
            ),
          );
        }, timeoutMs);
        const w = {
          re,
          resolve: (l: string) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        waiters.push(w);
        void exited.then(code => {
          if (waiters.includes(w)) {
            clearTimeout(timer);
            reject(
              new Error(
                `${opts.name} exited (${code}) before ${re}.\n${lines.slice(-30).join("\n")}`,
              ),
            );
          }
        });
      });
    },
  };
  try {
    await node.waitFor(opts.readyPattern ?? /started successfully/);
  } catch (err) {
    await node.kill(); // a node that never got ready is nobody's to stop later
    throw err;
  }
  return node;
}

/** Polls `fn` until it returns a truthy value. */
export async function waitUntil<T>(
  fn: () => Promise<T> | T,
  timeoutMs = 20_000,
  everyMs = 100,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until)
      throw new Error(`condition not met in ${timeoutMs} ms${last ? `: ${String(last)}` : ""}`);
    await new Promise(r => setTimeout(r, everyMs));
  }
}

export async function stopAll(nodes: Array<NodeProcess | undefined>): Promise<void> {
  await Promise.all(nodes.map(n => n?.kill("SIGTERM")));
}

export interface Gateway {
  node: NodeProcess;
  client: ApiClient;
  port: number;
  /** Resolves once /health/ready answers 200 (again, e.g. after a node was restarted). */
  ready(timeoutMs?: number): Promise<void>;
}

export interface GatewayOptions {
  namespace: string;
  env?: Record<string, string>;
  name?: string;
  /** What the process hosts besides the gateway's own `api` (default: nothing else). */
  services?: string[];
  start?: (o: StartNodeOptions) => Promise<NodeProcess>;
  readyTimeoutMs?: number;
}

/**
 * The api service in a process of its own on a free port. Resolves once its
 * /health/ready answers 200, i.e. it has discovered every service in READY_SERVICES.
 */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const port = await freePort();
  const node = await (opts.start ?? startNode)({
    name: opts.name ?? "gateway",
    services: ["api", ...(opts.services ?? [])],
    namespace: opts.namespace,
    env: { PORT: String(port), ...opts.env },
  });
  const client = new ApiClient(`http://127.0.0.1:${port}`);
  const ready = async (timeoutMs = opts.readyTimeoutMs ?? 30_000) => {
    await waitUntil(async () => (await client.get("/health/ready")).status === 200, timeoutMs);
  };
  await ready();
  return { node, client, port, ready };
}

/**
 * Deletes the JetStream streams a test namespace created (the channels adapter names
 * them `<namespace>_<channel with dots as underscores>`), so test runs leave nothing behind.
 */
export async function deleteNamespaceStreams(natsUrl: string, namespace: string): Promise<void> {
  const { connect } = await import("nats");
  const nc = await connect({ servers: new URL(natsUrl).host });
  try {
    const jsm = await nc.jetstreamManager();
    const names: string[] = [];
    for await (const info of jsm.streams.list()) {
      if (info.config.name.startsWith(`${namespace}_`)) names.push(info.config.name);
    }
    for (const name of names) await jsm.streams.delete(name);
  } finally {
    await nc.close();
  }
}

/** One test file's cluster: what it starts here is stopped and removed after its tests. */
export interface Cluster {
  readonly namespace: string;
  /** The NODE_ID of the node started as `name`. */
  nodeId(name: string): string;
  /** startNode in this namespace, env over the cluster's own. */
  node(opts: Omit<StartNodeOptions, "namespace">): Promise<NodeProcess>;
  /** startGateway in this namespace, env over the cluster's own. */
  gateway(opts?: Omit<GatewayOptions, "namespace" | "start">): Promise<Gateway>;
  /**
   * A broker in the test process, joined to the namespace over NATS (to call nodes and see
   * the registry, or to publish and consume channels): `options` over those defaults;
   * `beforeStart` can create its services.
   */
  broker(
    options?: BrokerOptions,
    beforeStart?: (broker: ServiceBroker) => void,
  ): Promise<ServiceBroker>;
  /** A new directory under the OS temp dir (made before the first test), e.g. a DATA_DIR. */
  tempDir(name: string): string;
}

/**
 * Call in a describe block: a namespace of its own, and after its tests the brokers, the
 * nodes, the JetStream streams and the temp dirs are gone. `env` goes to every node.
 */
export function useCluster(prefix: string, shared: { env?: Record<string, string> } = {}): Cluster {
  const namespace = uniqueNamespace(prefix);
  const nodes: NodeProcess[] = [];
  const brokers: ServiceBroker[] = [];
  const dirs: string[] = [];
  let running = false;
  const start = async (o: StartNodeOptions) => {
    const node = await startNode({ ...o, env: { ...shared.env, ...o.env } });
    nodes.push(node);
    return node;
  };

  // Hooks, not work at collection time: a skipped file must leave nothing behind.
  beforeAll(() => {
    running = true;
    for (const dir of dirs) fs.mkdirSync(dir, { recursive: true });
  });
  afterAll(async () => {
    await Promise.all(brokers.map(b => b.stop().catch(() => undefined)));
    await stopAll(nodes);
    await deleteNamespaceStreams(NATS_URL, namespace).catch(() => undefined);
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  return {
    namespace,
    nodeId: name => nodeIdOf(name, namespace),
    node: opts => start({ ...opts, namespace }),
    gateway: (opts = {}) => startGateway({ ...opts, namespace, start }),
    async broker(options = {}, beforeStart) {
      const { ServiceBroker } = await import("moleculer");
      const broker = new ServiceBroker({
        namespace,
        nodeID: `probe-${brokers.length}-${namespace}-${process.pid}`,
        transporter: NATS_URL as BrokerOptions["transporter"],
        serializer: "JSON",
        logger: false,
        requestTimeout: 3000,
        ...options,
      });
      brokers.push(broker);
      beforeStart?.(broker);
      await broker.start();
      return broker;
    },
    tempDir(name) {
      const dir = path.join(os.tmpdir(), `mintmesh-${name}-${namespace}`);
      dirs.push(dir);
      if (running) fs.mkdirSync(dir, { recursive: true });
      return dir;
    },
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    /** Why the cluster tier cannot run here; "" when NATS and Redis answer. */
    clusterUnavailable: string;
  }
}

/**
 * The cluster project's globalSetup (vitest.config.mts): probes NATS and Redis once and
 * says in one line why the tier is skipped when one does not answer. (`.ci/run` starts both.)
 */
export async function setup(project: TestProject): Promise<void> {
  const needed = [
    [NATS_URL, "nats-server -js", "TEST_NATS_URL"],
    [REDIS_URL, "redis-server", "TEST_REDIS_URL"],
  ];
  let reason = "";
  for (const [url, server, variable] of needed) {
    // A few tries: a busy machine may be slow to accept, and a skip must mean "not there".
    let up = false;
    for (let i = 0; i < 3 && !up; i++) up = await answers(url, 3000);
    if (!up) {
      reason = `nothing answers on ${url} (start ${server}, or point ${variable} at one)`;
      break;
    }
  }
  // CI starts both (.ci/run): there a missing server is a failure, never a quiet skip.
  if (reason && process.env.CI === "true") throw new Error(`cluster tests cannot run: ${reason}`);
  if (reason) console.warn(`cluster tests skipped: ${reason}`);
  project.provide("clusterUnavailable", reason);
}

/** True when the globalSetup found NATS or Redis silent: `describe.skipIf(clusterDown())(…)`. */
export const clusterDown = (): boolean => Boolean(inject("clusterUnavailable"));
