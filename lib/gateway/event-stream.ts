import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context } from "moleculer";
import type { Meta } from "../shared/context";

/**
 * Turns a gateway request into a server-sent event stream (the live stream, the operator
 * page's): no idle timeout on its socket (a quiet stream has its pings), headers that keep
 * a proxy from caching or buffering it, and the request marked a stream (Meta.stream), so
 * the request metrics do not count its life as the gateway's latency.
 */
export function openEventStream(
  req: IncomingMessage & { $ctx?: Context<unknown, object> },
  res: ServerResponse,
): void {
  req.socket.setTimeout(0);
  const meta = req.$ctx?.meta as Meta | undefined;
  if (meta) meta.stream = true;
  res.writeHead(200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
    Connection: "keep-alive",
  });
}
