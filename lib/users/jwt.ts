import { createSecretKey, type KeyObject } from "node:crypto";
import jwt from "jsonwebtoken";
import { envStr } from "../shared/env";
import { ConfigError, isProduction, productionSecret } from "../shared/config-guards";
import type { AuthUser } from "../shared/context";

export type { AuthUser };

const DEV_SECRET = "mintmesh-dev-secret-change-me";
let warned = false;

/**
 * JWT_SECRET: in production required, at least 32 bytes and no known placeholder (the
 * node refuses to start, naming it); elsewhere a fixed dev secret with a loud warning.
 */
export function jwtSecret(): string {
  const secret = envStr("JWT_SECRET");
  if (secret) return productionSecret("JWT_SECRET", secret);
  if (isProduction()) throw new ConfigError("JWT_SECRET must be set when NODE_ENV=production");
  if (!warned && process.env.NODE_ENV !== "test") {
    warned = true;
    process.emitWarning(
      "JWT_SECRET is not set: using the public development secret. Never do this in production.",
    );
  }
  return DEV_SECRET;
}

export function signAccessToken(user: AuthUser, secret: string, expiresIn: string): string {
  return jwt.sign({}, secret, {
    algorithm: "HS256",
    subject: user.id,
    expiresIn: expiresIn as jwt.SignOptions["expiresIn"],
  });
}

/**
 * jsonwebtoken first tries a string secret as a PEM public key on every verify (a third of
 * the gateway's CPU under load); a KeyObject built once skips that.
 */
const keys = new Map<string, KeyObject>();
function keyOf(secret: string): KeyObject {
  let key = keys.get(secret);
  if (!key) {
    key = createSecretKey(Buffer.from(secret));
    keys.set(secret, key);
  }
  return key;
}

/**
 * Tokens already verified, with their expiry: a client sends the same token with every
 * request, and the HMAC check plus decoding was the gateway's largest cost per call.
 * A hit must have been verified with the same secret, and still checks the expiry.
 */
const verified = new Map<string, { secret: string; id: string; expiresAt: number }>();
const VERIFIED_LIMIT = 10_000;

/** The user of a valid token, or null for a forged, malformed or expired one. */
export function verifyAccessToken(token: string, secret: string): AuthUser | null {
  const hit = verified.get(token);
  if (hit && hit.secret === secret) {
    if (Date.now() < hit.expiresAt) return { id: hit.id };
    verified.delete(token);
    return null;
  }
  try {
    const payload = jwt.verify(token, keyOf(secret), { algorithms: ["HS256"] });
    if (typeof payload !== "object" || typeof payload.sub !== "string" || !payload.sub) return null;
    if (typeof payload.exp === "number") {
      if (verified.size >= VERIFIED_LIMIT) verified.delete(verified.keys().next().value as string);
      verified.set(token, { secret, id: payload.sub, expiresAt: payload.exp * 1000 });
    }
    return { id: payload.sub };
  } catch {
    return null;
  }
}
