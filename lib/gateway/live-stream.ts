import type { ActivityRow } from "../events/activity";

/**
 * The live stream GET /api/me/events (docs/api.md "Live events"): the open Server-Sent
 * Events streams of one gateway, by user. No broker in here: rows come from a `LiveSource`
 * (activity.list, in mixins/live-events.mixin.ts), hints from the ACTIVITY_LIVE broadcast.
 *
 * Each stream remembers the cursor of the last row it sent and only ever asks for the rows
 * after it, oldest first; the activity service's cursors follow commit order, so reading
 * "after the last one sent" until a page comes back empty never skips nor repeats a row,
 * whichever gateway a client resumes on. Hints are best-effort (a broadcast is lost with a
 * node or a NATS hiccup): a stream also reads on a slow sweep, so a lost hint delays a row
 * by at most `rereadMs`, never drops it.
 *
 * One read per stream at a time; hints that arrive during a read coalesce into one more read.
 * One shared timer pings every stream and one sweeps them: 10,000 streams cost two timers.
 */

export interface LiveSource {
  /** The actor's rows strictly after `after` (null: from the first), oldest first. */
  after(actorId: string, after: string | null, limit: number): Promise<ActivityRow[]>;
  /** The cursor of the actor's newest row; null when there is none. */
  newest(actorId: string): Promise<string | null>;
}

/** What a stream writes to: a ServerResponse (or any Writable). */
export interface LiveSink {
  write(chunk: string): boolean;
  readonly writableLength: number;
  readonly writableEnded: boolean;
  once(event: "drain" | "close", fn: () => void): unknown;
  end(): void;
}

export interface LiveOptions {
  /** Open streams of one user on this gateway; beyond, refused (503). */
  maxPerUser: number;
  /** Open streams on this gateway; beyond, refused (503). */
  maxStreams: number;
  /** A `: ping` comment this often (ms). */
  pingMs: number;
  /** Each stream reads again at least this often without a hint (ms). */
  rereadMs: number;
  /** Rows per read. */
  pageSize: number;
  /** A client that has not taken its writes for this long (ms) is closed; it resumes. */
  stallMs: number;
  /** Buffered bytes beyond which a stream is closed at once. */
  maxBacklog: number;
  /** The reconnection delay sent in `retry:` (ms). */
  retryMs: number;
  /** How long a refused client should wait (s), sent in Retry-After. */
  retryAfterS: number;
  now?: () => number;
  /** A read failed (activity unavailable, …): the stream stays and reads again later. */
  onReadError?: (err: unknown, actorId: string) => void;
}

/** What one open stream holds of the gateway's heap (HTTP objects, its context, its state). */
export const STREAM_HEAP_BYTES = 18 * 1024;
/** What the gateway needs besides its streams (caches, routes, the broker). */
const GATEWAY_BASE_HEAP_BYTES = 64 * 1024 * 1024;

/**
 * The default bound on a gateway's streams: as many as its heap limit holds beside the rest,
 * at most 10,000. The deployed gateway's 96 MB old space (package.json gateway_node_flags)
 * holds about 3,000; 10,000 need --max-old-space-size=256 or more (docs/benchmarks.md).
 */
export function streamsTheHeapHolds(heapLimitBytes: number): number {
  const room = Math.floor((heapLimitBytes - GATEWAY_BASE_HEAP_BYTES) / STREAM_HEAP_BYTES);
  return Math.max(100, Math.min(10_000, room));
}

/** Too many streams: the 503's message and Retry-After. */
export class LiveRefused extends Error {
  constructor(
    message: string,
    readonly retryAfterS: number,
  ) {
    super(message);
    this.name = "LiveRefused";
  }
}

/** One SSE event of a row: its cursor as id, its type as event name, the row as data. */
export function rowEvent(row: ActivityRow): string {
  return `id: ${row.cursor}\nevent: ${row.type}\ndata: ${JSON.stringify(row)}\n\n`;
}

/**
 * A cursor as a client may send it (Last-Event-ID, ?after=): printable, short. Whether it
 * is one of the activity service's is for activity.list to say (400 naming `cursor`).
 */
const CURSOR = /^[A-Za-z0-9._:~-]{1,200}$/;
export function isCursorShaped(v: string): boolean {
  return CURSOR.test(v);
}

export class LiveStream {
  /** The cursor of the last row sent (or the start point); null: before the first row. */
  last: string | null = null;
  closed = false;
  private sink?: LiveSink;
  private reading = false;
  private again = false;
  private pending: ActivityRow[] = [];
  private wake?: () => void;
  /** A write found the client's buffer full: the next page waits for its "drain". */
  private full = false;
  /** When the last read began; the sweep reads streams that have not read for rereadMs. */
  readAt = 0;
  /** Since when the stream waits for its client to take its writes; 0: it does not. */
  waitingSince = 0;
  /**
   * When the credentials it was opened with expire (ms): the stream ends then, so a revoked
   * or expired token reads nothing more; the client reconnects with a fresh one.
   */
  expiresAt = Infinity;

  constructor(
    readonly userId: string,
    private readonly streams: LiveStreams,
  ) {}

  /**
   * Where to start, before the answer's headers go (so a failing activity service or a
   * foreign cursor is an error answer, not a stream): after `after`, or from the newest
   * row now, so that only new rows follow.
   */
  async begin(after: string | undefined): Promise<void> {
    const { source, opts } = this.streams;
    this.readAt = this.streams.now();
    if (after === undefined) {
      this.last = await source.newest(this.userId);
      return;
    }
    this.pending = await source.after(this.userId, after, opts.pageSize);
    this.last = after;
  }

  /** Starts writing to `sink`: the `retry:` field, the rows found by begin(), then reads. */
  attach(sink: LiveSink): void {
    this.sink = sink;
    sink.once("close", () => this.close());
    sink.write(`retry: ${this.streams.opts.retryMs}\n\n`);
    const first = this.pending;
    this.pending = [];
    if (this.writeRows(first)) this.poke();
  }

  /** New rows may exist: read them now, or once more after the read in flight. */
  poke(): void {
    if (this.closed || !this.sink) return;
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    void this.readAll().finally(() => {
      this.reading = false;
      if (this.again && !this.closed) {
        this.again = false;
        this.poke();
      }
    });
  }

  /** Pages after `last` until one comes back short, each written before the next is read. */
  private async readAll(): Promise<void> {
    const { source, opts } = this.streams;
    this.readAt = this.streams.now();
    try {
      for (;;) {
        const rows = await source.after(this.userId, this.last, opts.pageSize);
        if (this.closed) return;
        const more = this.writeRows(rows);
        if (!more) return;
        if (rows.length < opts.pageSize) return;
        // A client slower than the rows: wait until it has taken them (or the sweep closes it).
        // ("drain" comes only after a write that said the buffer was full: not for any backlog.)
        if (this.full && !(await this.drained())) return;
      }
    } catch (err) {
      this.streams.opts.onReadError?.(err, this.userId);
    }
  }

  /** Writes rows in order; false when the stream was closed for a backlog. */
  private writeRows(rows: ActivityRow[]): boolean {
    const sink = this.sink;
    if (!sink || this.closed) return false;
    for (const row of rows) {
      if (!sink.write(rowEvent(row))) this.full = true;
      this.last = row.cursor;
    }
    if (sink.writableLength > this.streams.opts.maxBacklog) {
      this.close();
      return false;
    }
    return true;
  }

  /** Resolves once the client took what was written: true, or the stream closed: false. */
  private drained(): Promise<boolean> {
    const sink = this.sink;
    if (!sink) return Promise.resolve(false);
    this.waitingSince = this.streams.now();
    return new Promise(resolve => {
      this.wake = () => {
        this.wake = undefined;
        this.waitingSince = 0;
        this.full = false;
        resolve(!this.closed);
      };
      sink.once("drain", () => this.wake?.());
    });
  }

  /** A `: ping`; closes a stream whose client stopped reading, or whose credentials expired. */
  ping(now: number): void {
    const sink = this.sink;
    if (!sink || this.closed) return;
    const stalled = this.waitingSince > 0 && now - this.waitingSince > this.streams.opts.stallMs;
    if (stalled || now >= this.expiresAt || sink.writableLength > this.streams.opts.maxBacklog) {
      this.close();
      return;
    }
    sink.write(": ping\n\n");
  }

  /** Ends the response (the client resumes with Last-Event-ID) and frees the slot. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.streams.remove(this);
    this.wake?.();
    if (this.sink && !this.sink.writableEnded) this.sink.end();
  }
}

export class LiveStreams {
  private readonly byUser = new Map<string, Set<LiveStream>>();
  private count = 0;
  private pingTimer?: NodeJS.Timeout;
  private sweepTimer?: NodeJS.Timeout;
  readonly now: () => number;

  constructor(
    readonly source: LiveSource,
    readonly opts: LiveOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.count;
  }

  /** Streams open for `userId` on this gateway. */
  of(userId: string): number {
    return this.byUser.get(userId)?.size ?? 0;
  }

  /** A slot for a new stream of `userId` (until `expiresAt`); LiveRefused when a bound is reached. */
  reserve(userId: string, expiresAt = Infinity): LiveStream {
    const { maxStreams, maxPerUser, retryAfterS } = this.opts;
    if (this.count >= maxStreams)
      throw new LiveRefused("Too many live streams on this server", retryAfterS);
    const own = this.byUser.get(userId) ?? new Set<LiveStream>();
    if (own.size >= maxPerUser)
      throw new LiveRefused(`At most ${maxPerUser} live streams per user`, retryAfterS);
    const stream = new LiveStream(userId, this);
    stream.expiresAt = expiresAt;
    own.add(stream);
    this.byUser.set(userId, own);
    this.count++;
    return stream;
  }

  remove(stream: LiveStream): void {
    const own = this.byUser.get(stream.userId);
    if (!own?.delete(stream)) return;
    this.count--;
    if (own.size === 0) this.byUser.delete(stream.userId);
  }

  /** ACTIVITY_LIVE: these actors have new rows. */
  hint(actorIds: readonly string[]): void {
    for (const id of actorIds) {
      const own = this.byUser.get(id);
      if (own) for (const s of own) s.poke();
    }
  }

  /** Every stream reads (e.g. after the transporter reconnected: hints may have been lost). */
  pokeAll(): void {
    for (const own of this.byUser.values()) for (const s of own) s.poke();
  }

  start(): void {
    if (this.pingTimer) return;
    this.pingTimer = setInterval(() => this.pingAll(), this.opts.pingMs);
    // Ten sweeps per reread period: each stream reads within rereadMs (+10 %) of its last read.
    this.sweepTimer = setInterval(() => this.sweep(), Math.max(10, this.opts.rereadMs / 10));
    this.pingTimer.unref();
    this.sweepTimer.unref();
  }

  stop(): void {
    clearInterval(this.pingTimer);
    clearInterval(this.sweepTimer);
    this.pingTimer = this.sweepTimer = undefined;
    for (const own of [...this.byUser.values()]) for (const s of [...own]) s.close();
  }

  private pingAll(): void {
    const now = this.now();
    for (const own of [...this.byUser.values()]) for (const s of [...own]) s.ping(now);
  }

  private sweep(): void {
    const due = this.now() - this.opts.rereadMs;
    for (const own of this.byUser.values()) for (const s of own) if (s.readAt <= due) s.poke();
  }
}
