import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Standard Webhooks signatures (docs/api.md "Webhooks"): a secret is `whsec_` + base64 of
 * random bytes, and the HMAC-SHA256 key is those bytes; a delivery carries
 * `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
 * (`v1,` + base64 of the HMAC over `<id>.<timestamp>.<body>`). The id is the activity
 * row's, the same on every attempt, so a receiver dedupes by it; the timestamp is the
 * attempt's, so a receiver may refuse old replays.
 */

export const SECRET_PREFIX = "whsec_";

/** A new endpoint secret: 32 random bytes (the spec asks for 24 to 64). */
export function newSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString("base64");
}

/** The HMAC key of a secret: the bytes after `whsec_` (a bare base64 secret is taken too). */
export function secretKey(secret: string): Buffer {
  const b64 = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  const key = Buffer.from(b64, "base64");
  if (key.length === 0) throw new Error("Empty webhook secret");
  return key;
}

/** `v1,<base64 HMAC-SHA256 of id.timestamp.body>`. */
export function sign(secret: string, id: string, timestampSec: number, body: string): string {
  const mac = createHmac("sha256", secretKey(secret))
    .update(`${id}.${timestampSec}.${body}`)
    .digest("base64");
  return `v1,${mac}`;
}

/** The three headers of one attempt. */
export function signedHeaders(
  secret: string,
  id: string,
  body: string,
  nowMs = Date.now(),
): Record<string, string> {
  const timestamp = Math.floor(nowMs / 1000);
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": sign(secret, id, timestamp, body),
  };
}

/**
 * What a receiver does: true when one of the space-separated `v1,` signatures matches
 * and the timestamp is within `toleranceSec` of now. For tests and the docs' example.
 */
export function verify(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  body: string,
  opts: { nowMs?: number; toleranceSec?: number } = {},
): boolean {
  const one = (name: string): string | undefined => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const id = one("webhook-id");
  const ts = one("webhook-timestamp");
  const given = one("webhook-signature");
  if (!id || !ts || !given || !/^\d+$/.test(ts)) return false;
  const now = Math.floor((opts.nowMs ?? Date.now()) / 1000);
  if (Math.abs(now - Number(ts)) > (opts.toleranceSec ?? 300)) return false;
  const expected = Buffer.from(sign(secret, id, Number(ts), body));
  return given.split(" ").some(sig => {
    const b = Buffer.from(sig);
    return b.length === expected.length && timingSafeEqual(b, expected);
  });
}
