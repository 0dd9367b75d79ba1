import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * NeDB keeps a whole collection in one process's memory: two processes writing the
 * same files would overwrite each other. A lock file per service directory makes the
 * second process refuse to start instead.
 */
export function lockDataDir(dir: string, service: string): () => void {
  const file = path.join(dir, "LOCK");
  const mine = `${process.pid}@${os.hostname()}`;
  for (;;) {
    try {
      fs.writeFileSync(file, mine, { flag: "wx" });
      return () => {
        if (fs.existsSync(file) && fs.readFileSync(file, "utf8") === mine) fs.unlinkSync(file);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const [pidText, host] = fs.readFileSync(file, "utf8").split("@");
      const pid = Number(pidText);
      if (host === os.hostname() && pid !== process.pid && isAlive(pid)) {
        throw new Error(
          `The ${service} data in ${dir} is in use by process ${pid}. NeDB files are single-writer: ` +
            `run one ${service} process per DATA_DIR, or set MONGO_URI to run replicas on MongoDB.`,
        );
      }
      fs.unlinkSync(file); // stale: its owner died without cleaning up
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
