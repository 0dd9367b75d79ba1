import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { acceptedRequestId } from "./body-guard";

/**
 * OPTIONS requests, answered by the gateway before any route or action (docs/api.md
 * "CORS"). moleculer-web resolves an OPTIONS request as the method its
 * Access-Control-Request-Method names, and answers it itself only when `cors` is set and
 * the header is there; otherwise it ran that alias's action with the query string as its
 * params: an OPTIONS to a write route moved tokens, made accounts and answered logins.
 * Here no OPTIONS request reaches a route: a preflight gets moleculer-web's own answer
 * when CORS is on, anything else a bare 204 naming the path's methods (404 when none).
 */

/** What this uses of the moleculer-web gateway service. */
export interface OptionsGateway {
  settings: { cors?: object };
  aliases: Array<{ method: string; match(url: string): object | false }>;
  /** moleculer-web's: CORS headers, and the 204 of a preflight (true when it answered). */
  corsHandler(settings: object, req: IncomingMessage, res: ServerResponse): boolean;
  /** moleculer-web's 404, through the gateway's error handler. */
  send404(req: IncomingMessage, res: ServerResponse): void;
  errorHandler(req: IncomingMessage, res: ServerResponse, err: Error): void;
}

type HttpHandler = (req: IncomingMessage, res: ServerResponse, next?: unknown) => unknown;

/** moleculer-web's httpHandler method (`routed`), with OPTIONS answered in front of it. */
export function answeringOptions(routed: HttpHandler | undefined) {
  if (!routed) throw new Error("moleculer-web has no httpHandler method");
  return function httpHandler(
    this: OptionsGateway,
    req: IncomingMessage,
    res: ServerResponse,
    next?: unknown,
  ): unknown {
    if (req.method !== "OPTIONS") return routed.call(this, req, res, next);
    try {
      answerOptions(this, req, res);
    } catch (err) {
      this.errorHandler(req, res, err as Error);
    }
    return undefined;
  };
}

/** What an alias of method "*" answers to, in the order Allow lists methods. */
const ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/** The methods the aliases serve at `url` (a path, maybe with a query string), OPTIONS last. */
export function allowedMethods(aliases: OptionsGateway["aliases"], url: string): string[] {
  let path = url.split("?")[0];
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
  const methods = new Set<string>();
  for (const alias of aliases) {
    if (!alias.match(path)) continue;
    for (const m of alias.method === "*" ? ANY_METHOD : [alias.method]) methods.add(m);
  }
  if (methods.size === 0) return [];
  const rank = (m: string) => (ANY_METHOD.includes(m) ? ANY_METHOD.indexOf(m) : ANY_METHOD.length);
  return [...[...methods].sort((a, b) => rank(a) - rank(b)), "OPTIONS"];
}

/**
 * Answers an OPTIONS request without calling anything; throws what moleculer-web's CORS
 * check throws (403 ORIGIN_NOT_ALLOWED), for the gateway's error handler.
 */
export function answerOptions(gw: OptionsGateway, req: IncomingMessage, res: ServerResponse): void {
  // No context is made for it (that would be an action call): the request id is set here.
  const given = req.headers["x-correlation-id"] ?? req.headers["x-request-id"];
  res.setHeader("X-Request-ID", acceptedRequestId(given) ?? randomUUID());
  if (gw.settings.cors && gw.corsHandler(gw.settings, req, res)) return;
  const methods = allowedMethods(gw.aliases, req.url ?? "/");
  if (methods.length === 0) {
    gw.send404(req, res);
    return;
  }
  res.writeHead(204, { Allow: methods.join(", "), "Content-Length": "0" });
  res.end();
}
