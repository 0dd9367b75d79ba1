/**
 * Server-Sent Events as a client reads them (the WHATWG parsing rules, enough for our
 * streams): events with their id, event name and data, and the comments (pings).
 */

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

export class SseParser {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  retry?: number;
  private buffer = "";
  private current: { id?: string; event?: string; data: string[] } = { data: [] };

  /** Feeds a chunk of the body; complete events land in `events`. */
  push(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf("\n"); nl >= 0; nl = this.buffer.indexOf("\n")) {
      const line = this.buffer.slice(0, nl).replace(/\r$/, "");
      this.buffer = this.buffer.slice(nl + 1);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === "") {
      const c = this.current;
      if (c.data.length > 0)
        this.events.push({ id: c.id, event: c.event ?? "message", data: c.data.join("\n") });
      this.current = { data: [] };
      return;
    }
    if (line.startsWith(":")) {
      this.comments.push(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") this.current.id = value;
    else if (field === "event") this.current.event = value;
    else if (field === "data") this.current.data.push(value);
    else if (field === "retry") this.retry = Number(value);
  }
}

/** An open GET of an SSE stream over plain HTTP (Node's fetch), read as it arrives. */
export interface SseStream {
  status: number;
  headers: Headers;
  parser: SseParser;
  /** Resolves when the server ended the stream (or it broke). */
  ended: Promise<void>;
  close(): void;
  /** Waits until `check` holds on what was received. */
  until(check: (p: SseParser) => boolean, timeoutMs?: number): Promise<void>;
}

export async function openSse(
  url: string,
  headers: Record<string, string> = {},
): Promise<SseStream> {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  const parser = new SseParser();
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  let done = false;
  const ended = (async () => {
    if (!res.body) return;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        parser.push(decoder.decode(chunk as Uint8Array, { stream: true }));
        notify();
      }
    } catch {
      // aborted or the connection broke: both end the stream
    } finally {
      done = true;
      notify();
    }
  })();
  return {
    status: res.status,
    headers: res.headers,
    parser,
    ended,
    close: () => abort.abort(),
    until(check, timeoutMs = 10_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(
            new Error(`SSE condition not met in ${timeoutMs} ms (${parser.events.length} events)`),
          );
        }, timeoutMs);
        const w = () => {
          if (check(parser)) {
            clearTimeout(timer);
            waiters.delete(w);
            resolve();
          } else if (done) {
            clearTimeout(timer);
            waiters.delete(w);
            reject(
              new Error(`SSE stream ended before the condition (${parser.events.length} events)`),
            );
          }
        };
        waiters.add(w);
        w();
      });
    },
  };
}
