import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";

/**
 * The gateway's access log: one info line per HTTP request, written when the response has
 * gone (or the client went away), whatever answered it: an action, an error (onError), a 404,
 * a rate limit, health. It names the request by its id, as every service line and span the
 * request caused does, so an operator can go from this line to all of them.
 *
 * It records the method, the route's pattern (`/api/tokens/:id`: requests of one route group
 * together) and the path without its query string, the status, the time taken, the request id
 * and the user's id when the bearer token named one (and the key's id, never the key, when an
 * API key did). Never a header (Authorization, cookies), a query string or a body: they are
 * where secrets travel.
 */

/** What moleculer-web hangs on the request, as far as this reads it. */
interface GatewayRequest extends IncomingMessage {
  $ctx?: { requestID?: string | null; meta?: { user?: { id?: string; keyId?: string } } };
  $alias?: { fullPath?: string };
}

export interface AccessLine {
  method: string;
  /** The alias pattern that matched; null when none did (a 404). */
  route: string | null;
  path: string;
  status: number;
  durationMs: number;
  requestID?: string;
  userId?: string;
  /** The API key's id (never the key) when one made the request. */
  keyId?: string;
  /** True when the client closed the connection before the answer was sent. */
  aborted?: true;
}

interface InfoLogger {
  info(obj: object, msg: string): void;
}

/** The line for a request whose response has ended (or been abandoned). */
export function accessLine(
  req: GatewayRequest,
  res: ServerResponse,
  durationMs: number,
  aborted = false,
): AccessLine {
  const url = req.url ?? "";
  const path = (req as { originalUrl?: string }).originalUrl ?? url;
  const requestID = req.$ctx?.requestID ?? headerValue(res.getHeader("X-Request-ID"));
  const userId = req.$ctx?.meta?.user?.id;
  const keyId = req.$ctx?.meta?.user?.keyId;
  return {
    method: req.method ?? "",
    route: req.$alias?.fullPath ?? null,
    path: path.split("?")[0],
    status: res.statusCode,
    durationMs: Math.round(durationMs * 10) / 10,
    ...(requestID ? { requestID } : {}),
    ...(userId ? { userId } : {}),
    ...(keyId ? { keyId } : {}),
    ...(aborted ? { aborted: true as const } : {}),
  };
}

function headerValue(v: number | string | string[] | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** `handler` (moleculer-web's httpHandler) with an access line logged once per request. */
export function withAccessLog(handler: RequestListener, logger: InfoLogger): RequestListener {
  return (req: IncomingMessage, res: ServerResponse) => {
    const start = process.hrtime.bigint();
    let done = false;
    const log = (aborted: boolean) => {
      if (done) return;
      done = true;
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      logger.info(accessLine(req as GatewayRequest, res, ms, aborted), "HTTP request");
    };
    res.once("finish", () => log(false));
    // "close" also follows "finish": only a close before it is a client that gave up.
    res.once("close", () => log(!res.writableFinished));
    handler(req, res);
  };
}
