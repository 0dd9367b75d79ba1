import type { NatsConnection } from "nats";

/**
 * One socket write per turn of the event loop for a NATS connection, instead of one per
 * publish. The nats client sends what is queued from a microtask, so each request handled
 * in its own I/O callback, each reply and each JetStream ack went out in a write of its
 * own; on loopback every write also runs the receiver's side of TCP in the writer's
 * system time. Deferring the send to the end of the turn (setImmediate) lets everything
 * published in that turn go in one write. Measured with bench:transfers over NATS: CPU
 * per transfer over all processes 2.3–2.8 ms → 1.7–1.8 ms (docs/benchmarks.md).
 *
 * The client's own rules stay: a queue past its pending limit is written at once, and so
 * is anything on a closed connection. The handler is the connection's for its whole life
 * (reconnects included), so one wrap holds.
 */

interface ProtocolHandler {
  _closed: boolean;
  pendingLimit: number;
  outbound: { size(): number };
  flushPending(): void;
}

const wrapped = new WeakSet<object>();

/** Defers `nc`'s socket writes to the end of the turn; false when its client has another shape. */
export function coalesceWrites(nc: NatsConnection | null | undefined): boolean {
  const protocol = (nc as unknown as { protocol?: Partial<ProtocolHandler> } | null)?.protocol;
  if (
    !protocol ||
    typeof protocol.flushPending !== "function" ||
    typeof protocol.outbound?.size !== "function" ||
    typeof protocol.pendingLimit !== "number"
  )
    return false;
  if (wrapped.has(protocol)) return true;
  wrapped.add(protocol);
  const handler = protocol as ProtocolHandler;
  const flushNow = handler.flushPending.bind(handler);
  let scheduled = false;
  handler.flushPending = () => {
    if (handler._closed || handler.outbound.size() >= handler.pendingLimit) return flushNow();
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushNow();
    });
  };
  return true;
}
