import { createHmac } from "node:crypto";
import jwt from "jsonwebtoken";

/**
 * How a browser authenticates GET /api/me/events: EventSource sends no Authorization
 * header, so POST /api/me/events/session (with the bearer token) sets this cookie, and the
 * stream takes it when no header is sent. HttpOnly (no script reads it), SameSite=Strict (no
 * other site sends it, so no other site can open a user's streams), Path=/api/me/events (no
 * other route ever sees it), Secure over HTTPS. It proves the user for the stream only, and
 * lives no longer than the bearer token it was made from. A token in the URL was the other
 * way: URLs end up in proxies' logs and in the spans' `req.url`.
 */

export const LIVE_COOKIE = "mintmesh_events";
export const LIVE_PATH = "/api/me/events";
const AUDIENCE = "mintmesh-events";

/** Derived from JWT_SECRET: a stream session is no API token, nor an /ops session. */
function sessionKey(secret: string): Buffer {
  return createHmac("sha256", secret).update("mintmesh events session v1").digest();
}

export function signLiveSession(userId: string, secret: string, ttlMs: number): string {
  return jwt.sign({}, sessionKey(secret), {
    algorithm: "HS256",
    subject: userId,
    audience: AUDIENCE,
    expiresIn: Math.max(1, Math.floor(ttlMs / 1000)),
  });
}

/** The user of a valid, unexpired stream session and when it expires (ms); null for anything else. */
export function verifyLiveSession(
  token: string,
  secret: string,
): { userId: string; expiresAt: number } | null {
  try {
    const p = jwt.verify(token, sessionKey(secret), { algorithms: ["HS256"], audience: AUDIENCE });
    if (typeof p !== "object" || typeof p.sub !== "string" || !p.sub) return null;
    return { userId: p.sub, expiresAt: typeof p.exp === "number" ? p.exp * 1000 : Infinity };
  } catch {
    return null;
  }
}

/** The ms a (verified) bearer token has left; undefined when it carries no expiry. */
export function tokenLifeMs(token: string, now = Date.now()): number | undefined {
  const p = jwt.decode(token);
  return p && typeof p === "object" && typeof p.exp === "number" ? p.exp * 1000 - now : undefined;
}

/** Set-Cookie of the session; an empty value with Max-Age=0 clears it. */
export function liveCookie(value: string, maxAgeMs: number, secure: boolean): string {
  const parts = [
    `${LIVE_COOKIE}=${value}`,
    `Path=${LIVE_PATH}`,
    "HttpOnly",
    "SameSite=Strict",
    `Max-Age=${Math.max(0, Math.floor(maxAgeMs / 1000))}`,
  ];
  if (secure) parts.push("Secure");
  return parts.join("; ");
}
