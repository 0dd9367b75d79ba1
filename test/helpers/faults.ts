import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { connect, type ConnectionOptions } from "nats";
import { freePort, waitUntil } from "./cluster";

/**
 * Faults a cluster test causes for real: a NATS server of its own (to kill and start again
 * on the same port and JetStream store), and a small tmpfs to fill up (needs root).
 */

export interface NatsServerOptions {
  /** The JetStream store directory (`-sd`): kept across restarts. */
  storeDir: string;
  /** More arguments, e.g. `--user`/`--pass`. */
  args?: string[];
  /** What a client needs to connect (e.g. user and pass), to tell when it answers. */
  connect?: ConnectionOptions;
}

export interface NatsServer {
  port: number;
  /** `nats://127.0.0.1:<port>`, without credentials. */
  url: string;
  /** Ends the server with `signal` (default SIGKILL) and waits until it is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and store; resolves once it takes clients. */
  start(): Promise<void>;
}

/** `nats-server -js` on a free port; resolves once it takes clients. */
export async function startNatsServer(opts: NatsServerOptions): Promise<NatsServer> {
  const port = await freePort();
  let proc: ChildProcess | undefined;
  const server: NatsServer = {
    port,
    url: `nats://127.0.0.1:${port}`,
    async kill(signal = "SIGKILL") {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const gone = new Promise(resolve => p.once("exit", resolve));
      p.kill(signal);
      await gone;
    },
    async start() {
      const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", opts.storeDir];
      proc = spawn("nats-server", [...args, ...(opts.args ?? [])], { stdio: "ignore" });
      await waitUntil(async () => {
        const nc = await connect({ servers: `127.0.0.1:${port}`, ...opts.connect });
        await nc.close();
        return true;
      }, 10_000);
    },
  };
  await server.start();
  return server;
}

/**
 * Whether this process may mount a tmpfs (root); when not, says in one line that `what`
 * is skipped: `describe.skipIf(!canMountTmpfs("…"))(…)`.
 */
export function canMountTmpfs(what: string): boolean {
  const root = process.getuid?.() === 0;
  if (!root) console.warn(`${what} skipped: mounting a tmpfs needs root`);
  return root;
}

/** Mounts a tmpfs of `size` (e.g. "8m") on `dir`, which must exist. Needs root. */
export function mountTmpfs(dir: string, size: string): void {
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]);
}

/** Unmounts `dir` (nothing may have files open on it). */
export function unmountTmpfs(dir: string): void {
  execFileSync("umount", [dir]);
}

/** Writes `file` until the disk under it is full; throws on anything but ENOSPC. */
export function fillDisk(file: string): void {
  const fd = fs.openSync(file, "w");
  try {
    for (;;) fs.writeSync(fd, Buffer.alloc(16 * 1024, 1));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    fs.closeSync(fd);
  }
}
