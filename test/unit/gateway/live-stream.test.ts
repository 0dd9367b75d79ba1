import { PassThrough, Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import type { ActivityRow } from "../../../lib/events/activity";
import {
  LiveRefused,
  LiveStreams,
  isCursorShaped,
  rowEvent,
  streamsTheHeapHolds,
  type LiveOptions,
  type LiveSource,
} from "../../../lib/gateway/live-stream";
import { SseParser } from "../../helpers/sse";

/**
 * The stream registry against an in-memory history that keeps activity.list's contract
 * (rows ordered by cursor, "after" strictly after), and real streams (PassThrough) as the
 * clients' connections.
 */

class History implements LiveSource {
  rows: ActivityRow[] = [];
  reads = 0;
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 0;
  failNext = 0;
  private seq = 0;

  add(actorId: string, n = 1): ActivityRow[] {
    const made: ActivityRow[] = [];
    for (let i = 0; i < n; i++) {
      const cursor = String(++this.seq).padStart(12, "0");
      const row: ActivityRow = {
        id: `r${this.seq}`,
        cursor,
        type: "transfer.in",
        at: new Date().toISOString(),
        actorId,
        data: { n: this.seq },
      };
      this.rows.push(row);
      made.push(row);
    }
    return made;
  }

  async after(actorId: string, after: string | null, limit: number): Promise<ActivityRow[]> {
    this.reads++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs) await sleep(this.delayMs);
      if (this.failNext > 0) {
        this.failNext--;
        throw new Error("activity unavailable");
      }
      return this.rows
        .filter(r => r.actorId === actorId && (after === null || r.cursor > after))
        .slice(0, limit);
    } finally {
      this.inFlight--;
    }
  }

  async newest(actorId: string): Promise<string | null> {
    const own = this.rows.filter(r => r.actorId === actorId);
    return own.length ? own[own.length - 1].cursor : null;
  }
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

const OPTS: LiveOptions = {
  maxPerUser: 3,
  maxStreams: 5,
  pingMs: 60_000,
  rereadMs: 60_000,
  pageSize: 10,
  stallMs: 60_000,
  maxBacklog: 1024 * 1024,
  retryMs: 2000,
  retryAfterS: 5,
};

/** A client connection that reads everything it is sent. */
function client() {
  const sink = new PassThrough();
  const parser = new SseParser();
  sink.on("data", (b: Buffer) => parser.push(b.toString()));
  const cursors = () => parser.events.map(e => e.id);
  return { sink, parser, cursors };
}

async function until(check: () => boolean, ms = 3000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met");
    await sleep(5);
  }
}

let registries: LiveStreams[] = [];
function registry(source: LiveSource, opts: Partial<LiveOptions> = {}) {
  const r = new LiveStreams(source, { ...OPTS, ...opts });
  r.start();
  registries.push(r);
  return r;
}
afterEach(() => {
  for (const r of registries) r.stop();
  registries = [];
});

async function open(r: LiveStreams, userId: string, after?: string) {
  const c = client();
  const s = r.reserve(userId);
  await s.begin(after);
  s.attach(c.sink);
  return { ...c, stream: s };
}

describe("a live stream", () => {
  it("resumes after a cursor with every later row in order (several pages), then live ones", async () => {
    const h = new History();
    const rows = h.add("ann", 25);
    h.add("bob", 3);
    const r = registry(h);
    const c = await open(r, "ann", rows[4].cursor);
    await until(() => c.parser.events.length === 20);
    expect(c.cursors()).toEqual(rows.slice(5).map(x => x.cursor));
    expect(c.parser.retry).toBe(2000);

    const live = h.add("ann", 2);
    r.hint(["ann"]);
    await until(() => c.parser.events.length === 22);
    expect(c.cursors().slice(20)).toEqual(live.map(x => x.cursor));
    const e = c.parser.events[21];
    expect(e.event).toBe("transfer.in");
    expect(JSON.parse(e.data)).toEqual(live[1]);
    expect(rowEvent(live[1])).toBe(
      `id: ${live[1].cursor}\nevent: transfer.in\ndata: ${JSON.stringify(live[1])}\n\n`,
    );
  });

  it("sends page after page to a client whose connection takes each write a moment later", async () => {
    // A socket's backlog is not empty after a write, though the write said "go on" (no
    // "drain" follows that): every page must still come.
    const h = new History();
    const rows = h.add("ann", 35);
    const r = registry(h);
    const parser = new SseParser();
    const sink = new Writable({
      highWaterMark: 1024 * 1024,
      write(chunk: Buffer, _enc, done) {
        parser.push(chunk.toString());
        setTimeout(done, 2);
      },
    });
    const s = r.reserve("ann");
    await s.begin(rows[0].cursor);
    s.attach(sink);
    await until(() => parser.events.length === 34);
    expect(parser.events.map(e => e.id)).toEqual(rows.slice(1).map(x => x.cursor));
  });

  it("without a cursor starts from now: only rows that come later", async () => {
    const h = new History();
    h.add("ann", 3);
    const r = registry(h);
    const c = await open(r, "ann");
    await sleep(30);
    expect(c.parser.events).toEqual([]);
    const [row] = h.add("ann");
    h.add("bob");
    r.hint(["ann", "bob"]);
    await until(() => c.parser.events.length === 1);
    await sleep(30);
    expect(c.cursors()).toEqual([row.cursor]);
  });

  it("reads once at a time: hints during a read become one more read, no row twice", async () => {
    const h = new History();
    h.delayMs = 40;
    const r = registry(h);
    const c = await open(r, "ann");
    await sleep(100); // the first read after attach
    const before = h.reads;
    const added: string[] = [];
    for (let i = 0; i < 20; i++) {
      added.push(...h.add("ann").map(x => x.cursor));
      r.hint(["ann"]);
      await sleep(2);
    }
    await until(() => c.parser.events.length === 20);
    await sleep(150);
    expect(c.cursors()).toEqual(added);
    expect(h.maxInFlight).toBe(1);
    // 20 hints: the read they found in flight, one more, and the empty pages ending each.
    expect(h.reads - before).toBeLessThanOrEqual(4);
  });

  it("finds a row whose hint was lost, within the reread period", async () => {
    const h = new History();
    const r = registry(h, { rereadMs: 100 });
    const c = await open(r, "ann");
    const [row] = h.add("ann"); // no hint
    await until(() => c.parser.events.length === 1, 1000);
    expect(c.cursors()).toEqual([row.cursor]);
  });

  it("keeps its place when a read fails, and sends the rows on the next one", async () => {
    const h = new History();
    const errors: unknown[] = [];
    const r = registry(h, { onReadError: err => errors.push(err) });
    const c = await open(r, "ann");
    await sleep(20);
    const rows = h.add("ann", 2);
    h.failNext = 1;
    r.hint(["ann"]);
    await until(() => errors.length === 1);
    expect(c.parser.events).toEqual([]);
    r.hint(["ann"]);
    await until(() => c.parser.events.length === 2);
    expect(c.cursors()).toEqual(rows.map(x => x.cursor));
  });

  it("pings every stream from one timer", async () => {
    const h = new History();
    const r = registry(h, { pingMs: 30 });
    const a = await open(r, "ann");
    const b = await open(r, "bob");
    await until(() => a.parser.comments.length >= 2 && b.parser.comments.length >= 2);
    expect(a.parser.comments[0]).toBe("ping");
  });
});

describe("the bounds", () => {
  it("refuses a user's stream beyond maxPerUser and any beyond maxStreams; a close frees the slot", async () => {
    const h = new History();
    const r = registry(h);
    const ann = [await open(r, "ann"), await open(r, "ann"), await open(r, "ann")];
    expect(() => r.reserve("ann")).toThrow(LiveRefused);
    await open(r, "bob");
    await open(r, "cid");
    expect(r.size).toBe(5);
    let refused: unknown;
    try {
      r.reserve("dan");
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(LiveRefused);
    expect((refused as LiveRefused).retryAfterS).toBe(5);

    ann[0].sink.destroy(); // the client went away
    await until(() => r.size === 4);
    expect(r.of("ann")).toBe(2);
    await open(r, "ann");
    expect(r.of("ann")).toBe(3);
  });

  it("by default holds as many streams as the heap holds, at most 10,000", () => {
    const MB = 1024 * 1024;
    // The deployed gateway (96 MB old space and its young generation) against a bigger heap.
    expect(streamsTheHeapHolds(120 * MB)).toBeGreaterThan(2000);
    expect(streamsTheHeapHolds(120 * MB)).toBeLessThan(4000);
    expect(streamsTheHeapHolds(384 * MB)).toBe(10_000);
    expect(streamsTheHeapHolds(32 * MB)).toBe(100);
  });

  it("closes the stream of a client that stopped reading, and frees its slot", async () => {
    const h = new History();
    h.add("ann");
    const r = registry(h, { pingMs: 20, stallMs: 50, pageSize: 100 });
    // Never read: its buffer fills past the high-water mark and stays there.
    const sink = new PassThrough({ highWaterMark: 1024 });
    const s = r.reserve("ann");
    await s.begin(undefined);
    s.attach(sink);
    h.add("ann", 300);
    r.hint(["ann"]);
    await until(() => r.size === 0, 2000);
    expect(s.closed).toBe(true);
    expect(sink.writableEnded).toBe(true);
    // What it was sent stops at a row boundary; the client resumes after its last id.
    expect(s.last).not.toBeNull();
  });
});

describe("credentials", () => {
  it("end the stream when they expire (the client reconnects with fresh ones)", async () => {
    const h = new History();
    const r = registry(h, { pingMs: 20 });
    const c = client();
    const s = r.reserve("ann", Date.now() + 100);
    await s.begin(undefined);
    s.attach(c.sink);
    const lasting = await open(r, "ann");
    await until(() => s.closed, 1000);
    expect(c.sink.writableEnded).toBe(true);
    expect(lasting.stream.closed).toBe(false);
    expect(r.of("ann")).toBe(1);
  });
});

describe("a cursor from a client", () => {
  it("is short and printable", () => {
    expect(isCursorShaped("000000000042")).toBe(true);
    expect(isCursorShaped("a:b-c_d.e~f")).toBe(true);
    expect(isCursorShaped("")).toBe(false);
    expect(isCursorShaped("x\ny")).toBe(false);
    expect(isCursorShaped("x".repeat(201))).toBe(false);
  });
});
