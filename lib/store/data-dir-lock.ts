import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

/**
 * The embedded stores are single-writer: NeDB keeps a whole collection in one process's
 * memory, and the SQLite store's group commit needs to be the only writer of its file (two
 * processes would overwrite each other, or wait on each other's locks). So one process per
 * service directory holds its lock.
 *
 *  - On this host, an OS-level lock decides: an abstract Unix socket named after the
 *    directory, which only one process can bind and which the kernel frees the moment
 *    its process dies (SIGKILL included). Binding is atomic: of processes racing to
 *    start, exactly one wins, with no stale state to clean up.
 *  - The LOCK file in the directory says which host holds it, for hosts that share the
 *    directory (a network file system): one written by another host is never taken over,
 *    since this host cannot tell whether that process lives. It is created with its
 *    content in one step (write a temporary file, then link it), so it is never empty.
 */

export class DataDirLockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DataDirLockedError";
  }
}

const socketName = (dir: string): string =>
  `\0mintmesh-data-${createHash("sha256").update(fs.realpathSync(dir)).digest("hex").slice(0, 32)}`;

function bind(name: string): Promise<net.Server | null> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", err =>
      (err as NodeJS.ErrnoException).code === "EADDRINUSE" ? resolve(null) : reject(err),
    );
    server.listen(name, () => {
      server.unref(); // holding the lock must not keep the process alive
      resolve(server);
    });
  });
}

/**
 * The host-local lock. Abstract sockets are Linux's (where mintmesh runs in production);
 * elsewhere (a developer's macOS) a live process with the pid in LOCK holds it, which is
 * racy between two processes started at the same instant but fine for one laptop.
 */
async function hostLock(dir: string): Promise<{ close(): void } | null> {
  if (process.platform === "linux") return bind(socketName(dir));
  const [pidText, host] = holder(path.join(dir, "LOCK")).split("@");
  const pid = Number(pidText);
  if (host === os.hostname() && pid !== process.pid && isAlive(pid)) return null;
  return { close: () => undefined };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

const holder = (file: string): string => {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return "";
  }
};

/** Takes the lock of `dir` for `service`, or throws naming who holds it. Returns its release. */
export async function lockDataDir(dir: string, service: string): Promise<() => void> {
  const file = path.join(dir, "LOCK");
  const mine = `${process.pid}@${os.hostname()}`;
  const inUse = (by: string) => {
    const [pid, host] = by.split("@");
    const who = pid && host ? `process ${pid} on ${host}` : "another process";
    return new DataDirLockedError(
      `The ${service} data in ${dir} is in use by ${who}. Embedded store files are ` +
        `single-writer: run one ${service} process per DATA_DIR, or set MONGO_URI to run ` +
        `replicas on MongoDB.`,
    );
  };

  const server = await hostLock(dir);
  if (!server) throw inUse(holder(file));
  try {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, mine);
    try {
      try {
        fs.linkSync(tmp, file); // fails if a LOCK exists: created with its content, atomically
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const [, host] = holder(file).split("@");
        if (host !== os.hostname()) throw inUse(holder(file));
        // Written on this host by a process that no longer holds the OS lock: it died.
        fs.renameSync(tmp, file);
      }
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  } catch (err) {
    server.close();
    throw err;
  }
  return () => {
    if (holder(file) === mine) fs.rmSync(file, { force: true });
    server.close();
  };
}
