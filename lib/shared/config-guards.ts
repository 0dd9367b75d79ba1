import { envStr } from "./env";

/**
 * What a node refuses to start with when NODE_ENV=production (README "Configuration"):
 * a guessable JWT secret signs anyone's token, and wallet-link messages naming
 * localhost would be signed for a site the user is not on. Each error names its variable.
 */

export const MIN_SECRET_BYTES = 32;

/** Secrets that are public: our dev default, the k8s example's, and the usual stand-ins. */
const PLACEHOLDERS = new Set([
  "mintmesh-dev-secret-change-me",
  "replace-with-at-least-32-random-bytes",
  "change-me",
  "changeme",
  "secret",
  "jwt-secret",
  "test-secret",
  "your-secret",
  "your-jwt-secret",
]);
const PLACEHOLDER_WORDS = /change-?me|replace-?with|placeholder|example|your-?secret/i;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export const isProduction = (): boolean => process.env.NODE_ENV === "production";

/** Why `secret` may not sign tokens in production, or null when it may. */
export function weakSecretReason(secret: string): string | null {
  if (PLACEHOLDERS.has(secret.toLowerCase()) || PLACEHOLDER_WORDS.test(secret)) {
    return "is a known placeholder";
  }
  if (Buffer.byteLength(secret) < MIN_SECRET_BYTES) {
    return `is shorter than ${MIN_SECRET_BYTES} bytes`;
  }
  return null;
}

/** `secret` from env `name`, refused in production when weak (the error names the variable). */
export function productionSecret(name: string, secret: string): string {
  const reason = isProduction() ? weakSecretReason(secret) : null;
  if (reason) {
    throw new ConfigError(
      `${name} ${reason}: NODE_ENV=production needs at least ${MIN_SECRET_BYTES} random bytes (openssl rand -hex 32)`,
    );
  }
  return secret;
}

/** Env `name`; unset is `fallback`, except in production, where it is an error naming it. */
export function requiredInProduction(name: string, fallback: string): string {
  const value = envStr(name);
  if (value !== undefined) return value;
  if (isProduction()) throw new ConfigError(`${name} must be set when NODE_ENV=production`);
  return fallback;
}
