import fs from "node:fs";

/**
 * The append-only file of one NeDB collection, written the way a database writes its
 * log. NeDB's own appends open, append and close per write, never sync, and its
 * per-collection queue waits for each: the disk's round trips bound a collection's
 * writes, and an acknowledged write could be lost with the machine.
 *
 * Here the file stays open; what a turn of the event loop appends goes out in one write
 * at the end of the turn, then one fdatasync serves every write of that turn and of the
 * turns that came while the previous sync ran (group commit). A Store call answers only
 * once its own bytes are synced: acknowledged means on disk (docs/architecture.md rule 9). With
 * `sync` off (tests, development) a write answers once it is in the page cache.
 *
 * The write is synchronous (microseconds into the page cache; a thread-pool round trip
 * cost the busy event loop more than the write) and the sync is not (it waits for the
 * device). A write that fails (ENOSPC, EIO) is cut back to the last whole line, so the
 * file never ends mid-document, and every write waiting on it fails.
 */

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

export class AppendLog {
  private fd: number | null = null;
  /** Bytes of the file that are whole lines: where a failed write is cut back to. */
  private size = 0;
  private batch: string[] = [];
  private waiters: Waiter[] = [];
  private syncing = false;
  private syncWaiters: Waiter[] = [];
  /** Resolves once everything appended so far is written (and synced, with `sync`). */
  lastWrite: Promise<void> = Promise.resolve();

  constructor(
    private readonly filename: string,
    private readonly sync: boolean,
    /** Told of a failed write or sync; the file is whole again, the writes waiting have failed. */
    private readonly onFailure: (err: Error) => void,
  ) {}

  append(text: string): void {
    this.batch.push(text);
    if (this.batch.length > 1) return;
    this.lastWrite = new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      setImmediate(() => this.flush());
    });
    this.lastWrite.catch(() => undefined);
  }

  /** Before NeDB rewrites the file (compaction, reload), finish and close; the next append reopens. */
  async close(): Promise<void> {
    await this.lastWrite.catch(() => undefined);
    while (this.syncing) await new Promise(resolve => setImmediate(resolve));
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) fs.closeSync(fd);
  }

  private flush(): void {
    const bytes = Buffer.from(this.batch.join(""));
    const waiters = this.waiters;
    this.batch = [];
    this.waiters = [];
    try {
      if (this.fd === null) {
        this.fd = fs.openSync(this.filename, "a");
        this.size = fs.fstatSync(this.fd).size;
      }
      for (let at = 0; at < bytes.length;) at += fs.writeSync(this.fd, bytes, at);
      this.size += bytes.length;
    } catch (err) {
      this.fail(waiters, err as Error);
      return;
    }
    if (!this.sync) {
      for (const w of waiters) w.resolve();
      return;
    }
    this.syncWaiters.push(...waiters);
    if (!this.syncing) this.startSync();
  }

  private startSync(): void {
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    const fd = this.fd;
    if (fd === null) return this.fail(waiters, new Error(`${this.filename} is closed`));
    this.syncing = true;
    fs.fdatasync(fd, err => {
      this.syncing = false;
      if (err) this.fail(waiters, err);
      else for (const w of waiters) w.resolve();
      if (this.syncWaiters.length > 0) this.startSync();
    });
  }

  private fail(waiters: Waiter[], err: Error): void {
    // The file must end with a whole line, or the next append would glue onto a torn one.
    try {
      if (this.fd !== null) fs.ftruncateSync(this.fd, this.size);
    } catch {
      // Cut at the next start instead (cutTornTail); until then no more appends here.
    }
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // Already unusable.
      }
      this.fd = null;
    }
    for (const w of [...waiters, ...this.syncWaiters]) w.reject(err);
    this.syncWaiters = [];
    this.onFailure(err);
  }
}

/**
 * An incomplete final line (a process killed mid-append, a disk that filled) is cut off;
 * the bytes cut are returned (0 when the file ends whole). Corruption elsewhere is not
 * touched here: NeDB refuses it (see corruptLine).
 */
export function cutTornTail(filename: string): number {
  let fd: number;
  try {
    fd = fs.openSync(filename, "r+");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
  try {
    const size = fs.fstatSync(fd).size;
    // Look back from the end for the last newline, a block at a time.
    const block = Buffer.alloc(64 * 1024);
    let end = size;
    while (end > 0) {
      const start = Math.max(0, end - block.length);
      const n = fs.readSync(fd, block, 0, end - start, start);
      const nl = block.subarray(0, n).lastIndexOf(0x0a);
      if (nl >= 0) {
        const whole = start + nl + 1;
        if (whole < size) fs.ftruncateSync(fd, whole);
        return size - whole;
      }
      end = start;
    }
    if (size > 0) fs.ftruncateSync(fd, 0);
    return size;
  } finally {
    fs.closeSync(fd);
  }
}

/** The first line (1-based) that is not a JSON document, for an error that names it. */
export function corruptLine(filename: string): number | null {
  const lines = fs.readFileSync(filename, "utf8").split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] === "") continue;
    try {
      JSON.parse(lines[i]);
    } catch {
      return i + 1;
    }
  }
  return null;
}
