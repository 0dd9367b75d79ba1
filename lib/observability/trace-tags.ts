import { createHash } from "node:crypto";
import type { Context } from "moleculer";

/**
 * What a span may record of a call's params (moleculer.config.ts `tracing.tags`):
 * Moleculer records every param by default, so the passwords of users.register and
 * users.login and the signatures of wallet links went to Jaeger in plain text. Here a
 * value under a key named like a secret, and any string shaped like a JWT or a wallet
 * signature or holding an API key, becomes "[redacted]"; long strings, deep objects and long arrays are cut,
 * since a span is for finding a request, not for keeping its body.
 */

export const REDACTED = "[redacted]";

/** Words that name a secret, as the last word of a key (accessToken, passwordHash, sig). */
const SECRET_WORDS = new Set([
  "password",
  "passwd",
  "pwd",
  "passphrase",
  "secret",
  "token",
  "jwt",
  "signature",
  "sig",
  "authorization",
  "cookie",
  "hash",
  "mnemonic",
  "seed",
  "credential",
  "credentials",
  "apikey",
  "privatekey",
]);

const JWT_SHAPE = /^[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*$/;
/** An API key (lib/users/api-keys.ts) wherever it is, even a field not named like a secret. */
const API_KEY_SHAPE = /mm_[A-Za-z0-9_-]{20,}/;
/** A 65-byte ECDSA signature (0x + 130 hex) or anything longer in hex. */
const SIGNATURE_SHAPE = /^(0x)?[0-9a-fA-F]{128,}$/;

const MAX_DEPTH = 4;
const MAX_STRING = 256;
const MAX_ITEMS = 20;

/** True when `key` names a secret: its last word (camelCase, snake_case, kebab-case) is one. */
export function isSecretKey(key: string): boolean {
  const words = key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  const last = words.at(-1) ?? "";
  const lastTwo = words.slice(-2).join("");
  return SECRET_WORDS.has(last) || SECRET_WORDS.has(lastTwo);
}

function redactString(value: string): string {
  if (JWT_SHAPE.test(value) || SIGNATURE_SHAPE.test(value) || API_KEY_SHAPE.test(value)) {
    return REDACTED;
  }
  return value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}…` : value;
}

/** A copy of `value` safe to record in a span. */
export function redactForTrace(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return redactString(value);
  if (value === null || typeof value !== "object") return value;
  if (depth >= MAX_DEPTH) return "[…]";
  if (Array.isArray(value)) {
    return value.slice(0, MAX_ITEMS).map(v => redactForTrace(v, depth + 1));
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).slice(0, MAX_ITEMS)) {
    const v = (value as Record<string, unknown>)[key];
    // A secret's name over an object (a `token` record) is no secret: look inside it.
    out[key] =
      isSecretKey(key) && (v === null || typeof v !== "object")
        ? REDACTED
        : redactForTrace(v, depth + 1);
  }
  return out;
}

/**
 * Moleculer's `tracing.tags.action` and `.event`: called with the context when a span
 * starts (and, for actions, again with the response, which is not recorded).
 */
export function traceTags(ctx: Context, ...response: unknown[]): Record<string, unknown> {
  if (response.length > 0) return {};
  // Who called: the service name (Moleculer's own tags name only the caller's node).
  return { params: redactForTrace(ctx.params), caller: ctx.caller ?? undefined };
}

/** Error fields a span records: never `data`, where validation errors keep the value given. */
export const TRACE_ERROR_FIELDS = ["name", "message", "code", "type"];

/**
 * Trace and span ids as exporters need them (hex, 128 and 64 bits). A span's trace id is its
 * request id: the gateway's own are UUIDs (hex once the dashes go), but a client may send any
 * X-Request-ID of `[A-Za-z0-9._:-]`, and a saga's id is the request id of its steps. Jaeger's
 * exporter would read such an id as hex up to its first non-hex character, i.e. as garbage or
 * nothing. Here an id that is not hex is hashed instead: every node derives the same trace id
 * from the same request id, and the span's `requestID` tag keeps the id as given.
 */
export function traceIdHex(id: string): string {
  const plain = id.replace(/-/g, "").toLowerCase();
  if (/^[0-9a-f]{32}$/.test(plain)) return plain;
  if (/^[0-9a-f]{16}$/.test(plain)) return plain.padStart(32, "0");
  return createHash("sha256").update(id).digest("hex").slice(0, 32);
}

/** A span id as 16 hex characters: the first 64 bits of a UUID, or a hash of anything else. */
export function spanIdHex(id: string): string {
  const plain = id.replace(/-/g, "").toLowerCase();
  if (/^[0-9a-f]{16,}$/.test(plain)) return plain.slice(0, 16);
  return createHash("sha256").update(id).digest("hex").slice(0, 16);
}

/** Where a later, asynchronous piece of work (an outbox publish) hangs in its request's trace. */
export interface TraceParent {
  requestID: string;
  /** The span (or, without tracing, the context) running when the work was decided. */
  parentID: string;
  /** Whether the trace is sampled; absent when tracing is off. */
  sampled?: boolean;
}
