import { createHash } from "node:crypto";

/**
 * Gateway side of Idempotency-Key (API.md): the first response to a key is kept and
 * replayed for the same key from the same user. A key reused with another request
 * is refused, as Stripe does.
 */
export interface StoredResponse {
  fingerprint: string;
  status: number;
  body: unknown;
}

export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;

export function idempotencyCacheKey(scope: string, key: string): string {
  return `idem:${scope}:${createHash("sha256").update(key).digest("hex")}`;
}

export function requestFingerprint(method: string, path: string, body: unknown): string {
  return createHash("sha256")
    .update(`${method} ${path}\n${JSON.stringify(body ?? null)}`)
    .digest("hex");
}

/** Thrown from the gateway's hooks to answer with a stored response instead of calling the action. */
export class ReplayResponse extends Error {
  constructor(readonly stored: StoredResponse) {
    super("Idempotent replay");
  }
}
