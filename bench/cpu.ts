import fs from "node:fs";
import os from "node:os";

/**
 * Where the CPU of a run goes, process by process: user + system seconds from
 * /proc/<pid>/stat (threads included: libuv's fdatasync pool, GC), for the platform's
 * nodes, the NATS server when one runs on this machine, and the bench's own clients.
 * On a machine whose cores are all busy, throughput is cores ÷ CPU per operation, so the
 * share of each process says what a change must shrink. Linux only: elsewhere it reports nothing.
 */

/** Clock ticks per second of /proc's times: 100 on every Linux this runs on. */
const TICKS = 100;

function cpuSeconds(pid: number): number | undefined {
  try {
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return undefined;
  }
}

/** The pid of a nats-server running on this machine (it is not the bench's child). */
function natsServerPid(): number | undefined {
  try {
    for (const entry of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const comm = fs.readFileSync(`/proc/${entry}/comm`, "utf8").trim();
      if (comm === "nats-server") return Number(entry);
    }
  } catch {
    // Not Linux, or /proc unreadable.
  }
  return undefined;
}

export interface CpuShare {
  name: string;
  /** CPU ms per operation. */
  msPerOp: number;
}

/**
 * Starts counting for `procs` (name → pid), the NATS server and this process; `stop(ops)`
 * returns each one's CPU ms per operation, largest first, and the machine's ceiling: how
 * many operations per second its cores could do at that total.
 */
export function cpuMeter(procs: Array<{ name: string; pid: number }>) {
  const nats = natsServerPid();
  const all = [...procs, ...(nats ? [{ name: "nats-server", pid: nats }] : [])];
  const before = all.map(p => cpuSeconds(p.pid));
  const self = process.cpuUsage();
  return {
    stop(ops: number): { shares: CpuShare[]; totalMs: number; ceiling: number } | undefined {
      if (ops <= 0 || before.some(b => b === undefined)) return undefined;
      // Processes of one name (e.g. PostgreSQL's backends) count as one.
      const byName = new Map<string, number>();
      all.forEach((p, i) => {
        const ms = (((cpuSeconds(p.pid) ?? before[i]!) - before[i]!) * 1000) / ops;
        byName.set(p.name, (byName.get(p.name) ?? 0) + ms);
      });
      const shares: CpuShare[] = [...byName].map(([name, msPerOp]) => ({ name, msPerOp }));
      const own = process.cpuUsage(self);
      shares.push({ name: "bench clients", msPerOp: (own.user + own.system) / 1000 / ops });
      shares.sort((a, b) => b.msPerOp - a.msPerOp);
      const totalMs = shares.reduce((s, x) => s + x.msPerOp, 0);
      return { shares, totalMs, ceiling: (os.availableParallelism() * 1000) / totalMs };
    },
  };
}

/** One line for the log: "tokens 1.31, api 0.74, … = 4.02 CPU ms per transfer; 2 cores: ≤ 497/s". */
export function cpuLine(
  r: { shares: CpuShare[]; totalMs: number; ceiling: number },
  op: string,
): string {
  const parts = r.shares.map(s => `${s.name} ${s.msPerOp.toFixed(2)}`).join(", ");
  return (
    `CPU ms per ${op}: ${parts} = ${r.totalMs.toFixed(2)}; ` +
    `${os.availableParallelism()} cores at that cost: ≤ ${Math.round(r.ceiling)}/s`
  );
}
