import { createHmac } from "node:crypto";
import type { IncomingMessage } from "node:http";
import jwt from "jsonwebtoken";

/**
 * Who may see the operator page (/ops): the admins listed in ADMIN_EMAILS, proving it with a
 * bearer JWT of the API or with the page's own session cookie. This file holds the pure
 * parts: the admin list, the session token inside the cookie, the cookie itself and the
 * same-origin check of the state-changing endpoints. No broker in here.
 */

export const OPS_COOKIE = "mintmesh_ops";
/** The cookie is sent to the page and its endpoints only. */
export const OPS_PATH = "/ops";
const AUDIENCE = "mintmesh-ops";

/** ADMIN_EMAILS as a set of lowercased emails (users.login lowercases emails too). */
export function adminSet(list: string[]): Set<string> {
  return new Set(list.map(e => e.trim().toLowerCase()).filter(Boolean));
}

/**
 * The session's signing key, derived from JWT_SECRET: an API access token is no session and a
 * session is no API token, though one secret is configured.
 */
function sessionKey(secret: string): Buffer {
  return createHmac("sha256", secret).update("mintmesh ops session v1").digest();
}

export interface OpsSession {
  userId: string;
  email: string;
  /** ms since epoch. */
  expiresAt: number;
}

export function signSession(
  who: { userId: string; email: string },
  secret: string,
  ttlMs: number,
): string {
  return jwt.sign({ email: who.email }, sessionKey(secret), {
    algorithm: "HS256",
    subject: who.userId,
    audience: AUDIENCE,
    expiresIn: Math.max(1, Math.floor(ttlMs / 1000)),
  });
}

/** The session of a valid, unexpired session token; null for anything else. */
export function verifySession(token: string, secret: string): OpsSession | null {
  try {
    const p = jwt.verify(token, sessionKey(secret), { algorithms: ["HS256"], audience: AUDIENCE });
    if (typeof p !== "object" || typeof p.sub !== "string" || typeof p.email !== "string")
      return null;
    if (typeof p.exp !== "number") return null;
    return { userId: p.sub, email: p.email, expiresAt: p.exp * 1000 };
  } catch {
    return null;
  }
}

/** One cookie's value from a Cookie header (RFC 6265 pairs), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}

/**
 * Set-Cookie of the session: HttpOnly (no script reads it), SameSite=Strict (no other site
 * sends it), Path=/ops (the API never sees it); Secure when the page was reached over HTTPS.
 * An empty value with Max-Age=0 clears it.
 */
export function sessionCookie(value: string, maxAgeMs: number, secure: boolean): string {
  const parts = [
    `${OPS_COOKIE}=${value}`,
    `Path=${OPS_PATH}`,
    "HttpOnly",
    "SameSite=Strict",
    `Max-Age=${Math.max(0, Math.floor(maxAgeMs / 1000))}`,
  ];
  if (secure) parts.push("Secure");
  return parts.join("; ");
}

const first = (v: string | string[] | undefined): string | undefined =>
  (Array.isArray(v) ? v[0] : v)?.split(",")[0]?.trim() || undefined;

/** HTTPS seen by the gateway itself, or said by a proxy of ours (TRUST_PROXY > 0). */
export function overHttps(req: IncomingMessage, trustProxy: number): boolean {
  if ((req.socket as { encrypted?: boolean }).encrypted) return true;
  return trustProxy > 0 && first(req.headers["x-forwarded-proto"])?.toLowerCase() === "https";
}

/**
 * The CSRF check of login and logout, beside JSON-only bodies (a cross-site form cannot
 * send application/json without a preflight we never allow): a browser's Origin, when it
 * sends one, must name this host, and Sec-Fetch-Site must not say cross-site.
 */
export function sameOrigin(req: IncomingMessage, trustProxy: number): boolean {
  if (first(req.headers["sec-fetch-site"]) === "cross-site") return false;
  const origin = first(req.headers.origin);
  if (origin === undefined) return true;
  let host: string;
  try {
    host = new URL(origin).host;
  } catch {
    return false; // "null" (sandboxed frames, some redirects) and garbage
  }
  const own = (trustProxy > 0 && first(req.headers["x-forwarded-host"])) || req.headers.host;
  return Boolean(own) && host.toLowerCase() === own?.toLowerCase();
}

/** application/json, with or without parameters (charset). */
export function isJson(req: IncomingMessage): boolean {
  const type = req.headers["content-type"] ?? "";
  return type.split(";")[0].trim().toLowerCase() === "application/json";
}
