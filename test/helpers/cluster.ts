import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { ApiClient } from "./http";
import { runnerArgs } from "../../bin/runner-args";

/**
 * Real Moleculer nodes for the cluster tier: each is a separate `moleculer-runner`
 * process on the compiled code (run `npm run build` first; `npm test` does), joined
 * over the real NATS server. A unique NAMESPACE per test keeps clusters apart.
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
    NODE_ID: `${opts.name}-${opts.namespace}`,
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
  await node.waitFor(opts.readyPattern ?? /started successfully/);
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
}

/**
 * The api service in a process of its own on a free port. Resolves once its
 * /health/ready answers 200, i.e. it has discovered every service in READY_SERVICES.
 */
export async function startGateway(opts: {
  namespace: string;
  env?: Record<string, string>;
  name?: string;
  start?: (o: StartNodeOptions) => Promise<NodeProcess>;
  readyTimeoutMs?: number;
}): Promise<Gateway> {
  const port = await freePort();
  const node = await (opts.start ?? startNode)({
    name: opts.name ?? "gateway",
    services: ["api"],
    namespace: opts.namespace,
    env: { PORT: String(port), ...opts.env },
  });
  const client = new ApiClient(`http://127.0.0.1:${port}`);
  await waitUntil(
    async () => (await client.get("/health/ready")).status === 200,
    opts.readyTimeoutMs ?? 30_000,
  );
  return { node, client, port };
}
