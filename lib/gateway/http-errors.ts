import type { ServerResponse } from "node:http";
import { ERROR_STATUS, type ErrorType, type FieldError } from "../shared/errors";

/** Answers with `body` as JSON, unless an answer has gone already. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) return;
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", ...headers });
  res.end(JSON.stringify(body));
}

/**
 * Maps any error raised while serving a request to the docs/api.md error shape. Only
 * errors that are the client's (4xx with a known meaning) pass their message on;
 * everything else becomes a 500 that says "Internal server error" and the request id.
 */

export interface ErrorBody {
  error: { type: string; message: string; requestId: string; data?: unknown };
}

export interface HttpErrorResponse {
  status: number;
  body: ErrorBody;
  /** True when the error is ours to log as a fault (5xx). */
  internal: boolean;
}

interface ErrorLike {
  message?: string;
  code?: unknown;
  status?: unknown;
  type?: unknown;
  data?: unknown;
}

const UNAVAILABLE = new Set([
  "SERVICE_NOT_AVAILABLE",
  "SERVICE_UNAVAILABLE",
  "REQUEST_TIMEOUT",
  "REQUEST_REJECTED",
  "QUEUE_FULL",
  "NO_ENDPOINT",
]);

/** fastest-validator entries carry `actual` (maybe a password): keep field and message only. */
export function fieldErrors(data: unknown): FieldError[] {
  if (!Array.isArray(data)) return [];
  return data.map((d: { field?: unknown; message?: unknown }) => ({
    field: typeof d.field === "string" ? d.field : "",
    message: typeof d.message === "string" ? d.message : "is invalid",
  }));
}

export function toErrorResponse(raw: unknown, requestId: string): HttpErrorResponse {
  const err = (raw ?? {}) as ErrorLike;
  const type = typeof err.type === "string" ? err.type : "";
  const code =
    typeof err.code === "number" ? err.code : typeof err.status === "number" ? err.status : 500;
  const answer = (status: number, t: string, message: string, data?: unknown) => ({
    status,
    body: { error: { type: t, message, requestId, ...(data === undefined ? {} : { data }) } },
    internal: status >= 500 && t === "INTERNAL_ERROR",
  });
  // Our own types: their status from the one table (lib/shared/errors.ts).
  const make = (t: ErrorType, message: string, data?: unknown): HttpErrorResponse =>
    answer(ERROR_STATUS[t], t, message, data);

  // body-parser (http-errors objects)
  if (type === "entity.too.large")
    return make("PAYLOAD_TOO_LARGE", "Request body is larger than 1 MB");
  if (type === "entity.parse.failed" || type === "INVALID_REQUEST_BODY") {
    return make("VALIDATION_ERROR", "Malformed JSON body", [
      { field: "body", message: "is not valid JSON" },
    ]);
  }
  if (type === "encoding.unsupported" || type === "charset.unsupported") {
    return make("UNSUPPORTED_MEDIA_TYPE", "Unsupported content encoding");
  }

  if (type === "VALIDATION_ERROR")
    return make("VALIDATION_ERROR", "Invalid request", fieldErrors(err.data));
  if (code === 401)
    return make(
      "UNAUTHORIZED",
      ownMessage(err, type === "UNAUTHORIZED", "Authentication required"),
    );
  // A full bulkhead queue (429 in Moleculer) is our overload, not the client's rate: 503.
  if (UNAVAILABLE.has(type) || code === 503)
    return make("SERVICE_UNAVAILABLE", "Service unavailable");
  if (code === 429) return make("RATE_LIMITED", "Too many requests");
  // No node serves the action (yet, or any more): the gateway's aliases only name
  // published actions, so this is an outage, not an unknown route.
  if (type === "SERVICE_NOT_FOUND") return make("SERVICE_UNAVAILABLE", "Service unavailable");
  if (code === 404)
    return make("NOT_FOUND", ownMessage(err, type === "NOT_FOUND" && !!err.message, "Not found"));
  if (code >= 400 && code < 500 && /^[A-Z][A-Z0-9_]+$/.test(type)) {
    return answer(code, type, err.message ?? "Request refused", err.data);
  }
  return make("INTERNAL_ERROR", "Internal server error");
}

function ownMessage(err: ErrorLike, trusted: boolean, fallback: string): string {
  return trusted && err.message ? err.message : fallback;
}

/** The seconds an action's own 429 says to wait (its `data.retryAfter`), when it says. */
export function ownRetryAfter(err: unknown): number | undefined {
  const v = (err as { data?: { retryAfter?: unknown } } | null)?.data?.retryAfter;
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.ceil(v) : undefined;
}
