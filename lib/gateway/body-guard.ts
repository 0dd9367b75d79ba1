import type { IncomingHttpHeaders } from "node:http";
import { ClientError, type FieldError } from "../shared/errors";

/**
 * What the gateway takes of a request before any action sees it (docs/api.md "Bodies"):
 * moleculer-web merges the body and the query string into one params object with
 * Object.assign, so `?amount=500` overrode the body's amount, a `__proto__` key set the
 * params' prototype (its fields then passed validation), and any JSON value was a body.
 *
 * Write routes (POST, PUT, PATCH) take one JSON object, sent as application/json, and no
 * query parameter; other methods take no body. Nowhere a key named __proto__,
 * constructor or prototype, nor nesting deeper than MAX_NESTING. And which X-Request-ID
 * is kept: it goes into every log line and span of the request.
 */

export const MAX_NESTING = 32;
const RESERVED_KEYS = new Set(["__proto__", "constructor", "prototype"]);
const WRITE_METHODS = new Set(["POST", "PUT", "PATCH"]);

/** The parts of moleculer-web's request read and set here. */
export interface GuardedRequest {
  method?: string;
  headers: IncomingHttpHeaders;
  body?: unknown;
  query?: Record<string, unknown>;
}

export const isWriteMethod = (method: string | undefined): boolean =>
  WRITE_METHODS.has((method ?? "").toUpperCase());

const invalid = (fields: FieldError[]): ClientError =>
  new ClientError("Invalid request", 400, "VALIDATION_ERROR", fields);

/** Whether the request says it carries a body (a length above 0, or chunks). */
function declaresBody(headers: IncomingHttpHeaders): boolean {
  if (headers["transfer-encoding"] !== undefined) return true;
  return Number(headers["content-length"] ?? 0) > 0;
}

/** application/json, with or without parameters (charset: body-parser refuses what it cannot read). */
export function isJsonMediaType(contentType: string | undefined): boolean {
  return (contentType ?? "").split(";")[0].trim().toLowerCase() === "application/json";
}

/**
 * The first reserved key or too deep nesting in `root`, as a field error; null when none.
 * Iterative: a 400 KB body of nested arrays is 200,000 levels, more than any recursion.
 */
export function shapeProblem(root: unknown, prefix = ""): FieldError | null {
  const stack: Array<{ value: unknown; path: string; depth: number }> = [
    { value: root, path: prefix, depth: 0 },
  ];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const { value, path, depth } = item;
    if (value === null || typeof value !== "object") continue;
    if (depth >= MAX_NESTING) {
      return { field: path || "body", message: `nests deeper than ${MAX_NESTING} levels` };
    }
    for (const key of Object.keys(value)) {
      const child = path ? `${path}.${key}` : key;
      if (RESERVED_KEYS.has(key)) return { field: child, message: "is a reserved name" };
      stack.push({ value: (value as Record<string, unknown>)[key], path: child, depth: depth + 1 });
    }
  }
  return null;
}

/**
 * Checks the request and leaves in `req.body` and `req.query` only what an action may be
 * given: throws a 400 VALIDATION_ERROR or a 415 UNSUPPORTED_MEDIA_TYPE otherwise.
 */
export function guardRequest(req: GuardedRequest): void {
  const query = req.query ?? {};
  const queryProblem = shapeProblem(query, "query");
  if (queryProblem) throw invalid([queryProblem]);
  if (!isWriteMethod(req.method)) {
    req.body = {};
    return;
  }
  const undeclared = Object.keys(query);
  if (undeclared.length > 0) {
    // Write routes declare no query parameter: the body says what the request means.
    throw invalid(
      undeclared.map(name => ({
        field: `query.${name}`,
        message: "is not a parameter of this route; send fields in the JSON body",
      })),
    );
  }
  req.query = {};
  if (!declaresBody(req.headers)) {
    req.body = {};
    return;
  }
  if (!isJsonMediaType(req.headers["content-type"])) {
    throw new ClientError(
      "The body must be JSON, sent as Content-Type: application/json",
      415,
      "UNSUPPORTED_MEDIA_TYPE",
    );
  }
  const body = req.body;
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw invalid([{ field: "body", message: "must be a JSON object" }]);
  }
  const problem = shapeProblem(body);
  if (problem) throw invalid([problem]);
}

/** guardRequest as a moleculer-web route middleware (`use`): it runs after the body parser. */
export function bodyGuard(req: GuardedRequest, _res: unknown, next: (err?: unknown) => void): void {
  try {
    guardRequest(req);
    next();
  } catch (err) {
    next(err);
  }
}

/** X-Request-ID (or X-Correlation-ID) as given, when it is short and plain; else none. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function acceptedRequestId(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" && REQUEST_ID.test(value) ? value : undefined;
}
