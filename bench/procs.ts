import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * The processes and temp dirs a benchmark makes, and their end: every child is killed and
 * every dir removed when the bench finishes, fails, or gets SIGINT/SIGTERM, so a stopped
 * bench leaves no node running on a port or consuming from NATS.
 */

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** performance.now() at spawn. */
  spawnedAt: number;
  /** The last lines it printed (stdout and stderr), for error messages. */
  lines: string[];
  exited: Promise<void>;
  alive(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const ROOT = path.resolve(__dirname, "../..");
const children = new Set<Child>();
const dirs = new Set<string>();
const cleanups: Array<() => Promise<unknown>> = [];
let installed = false;
let stoppedBy: string | undefined;

/** The signal that is stopping the bench, if any: what fails after it is no news. */
export const interrupted = (): string | undefined => stoppedBy;

/** Kills what is still running at once; the only thing possible in an `exit` handler. */
function killNow(): void {
  for (const c of children) if (c.alive()) c.proc.kill("SIGKILL");
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
}

/**
 * SIGINT/SIGTERM end the bench through `cleanup` and `exit` (whose handlers kill what is
 * left); called by everything here, and by benches that spawn children of their own.
 */
export function install(): void {
  if (installed) return;
  installed = true;
  process.on("exit", killNow);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      stoppedBy = signal;
      console.error(`\nbench: ${signal}, stopping what it started`);
      const timer = setTimeout(() => process.exit(130), 15_000);
      void cleanup().finally(() => {
        clearTimeout(timer);
        process.exit(130);
      });
    });
  }
}

const KEEP_LINES = 60;

/**
 * Spawns `node args` (or `command` when given) as a child the bench owns. Its output is
 * kept (last lines) and shown only with BENCH_VERBOSE=1, so the table stays readable.
 */
export function spawnChild(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  command: string = process.execPath,
): Child {
  install();
  const proc = spawn(command, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  const verbose = process.env.BENCH_VERBOSE === "1";
  const keep = (line: string) => {
    if (!line) return;
    lines.push(line);
    if (lines.length > KEEP_LINES) lines.shift();
    if (verbose) console.error(`[${name}] ${line}`);
  };
  // Per stream: a chunk may end inside a line, which waits for the rest (or the end).
  for (const stream of [proc.stdout, proc.stderr]) {
    let partial = "";
    stream?.on("data", (buf: Buffer) => {
      const parts = (partial + buf.toString()).split("\n");
      partial = parts.pop() ?? "";
      parts.forEach(keep);
    });
    stream?.on("end", () => keep(partial));
  }
  // "close": after its output is all read, which the wrk figures need.
  const exited = new Promise<void>(resolve => proc.once("close", () => resolve()));
  const child: Child = {
    name,
    proc,
    pid: proc.pid ?? 0,
    spawnedAt: performance.now(),
    lines,
    exited,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    async stop(graceMs = 5000) {
      if (child.alive()) {
        proc.kill("SIGTERM");
        const timer = setTimeout(() => child.alive() && proc.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      children.delete(child);
    },
  };
  children.add(child);
  return child;
}

/** A fresh temp dir, removed at the end (or by `removeDir`). */
export function tempDir(prefix: string): string {
  install();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `mintmesh-bench-${prefix}-`));
  dirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** Work to do at the end (e.g. deleting a namespace's JetStream streams). */
export function atCleanup(fn: () => Promise<unknown>): void {
  install();
  cleanups.push(fn);
}

/** Stops every child, runs the cleanups, removes the temp dirs. Safe to call twice. */
export async function cleanup(): Promise<void> {
  await Promise.all([...children].map(c => c.stop()));
  for (const fn of cleanups.splice(0)) await fn().catch(() => undefined);
  for (const d of [...dirs]) removeDir(d);
}

/** Stops `some` children (a finished case), leaving the others. */
export async function stopChildren(some: Child[]): Promise<void> {
  await Promise.all(some.map(c => c.stop()));
}

/**
 * Resolves with the ms from the first child's spawn until `url` answers 200; throws, with
 * the last lines of a child that died, when one of `watch` exits or after `timeoutMs`.
 */
export async function waitHttp(
  url: string,
  watch: Child[],
  timeoutMs = 60_000,
  everyMs = 50,
): Promise<number> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(2000) }).then(
      async r => {
        await r.arrayBuffer();
        return r.status === 200;
      },
      () => false,
    );
    if (ok) return performance.now() - (watch[0]?.spawnedAt ?? 0);
    const dead = watch.find(c => !c.alive());
    if (dead)
      throw new Error(`${dead.name} exited before ${url} was ready:\n${dead.lines.join("\n")}`);
    if (performance.now() > until) {
      const tails = watch.map(c => `[${c.name}] ${c.lines.slice(-10).join("\n")}`).join("\n");
      throw new Error(`${url} not ready in ${timeoutMs} ms\n${tails}`);
    }
    await new Promise(r => setTimeout(r, everyMs));
  }
}

/** Resident memory of a process in MB (/proc/<pid>/status VmRSS), undefined off Linux. */
export function rssMb(pid: number): number | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves once `child` prints a line matching `re`; throws if it exits first or after `timeoutMs`. */
export async function waitLine(child: Child, re: RegExp, timeoutMs = 30_000): Promise<number> {
  const until = performance.now() + timeoutMs;
  while (!child.lines.some(l => re.test(l))) {
    if (!child.alive()) throw new Error(`${child.name} exited:\n${child.lines.join("\n")}`);
    if (performance.now() > until)
      throw new Error(`${child.name}: no ${re} in ${timeoutMs} ms\n${child.lines.join("\n")}`);
    await new Promise(r => setTimeout(r, 20));
  }
  return performance.now() - child.spawnedAt;
}
