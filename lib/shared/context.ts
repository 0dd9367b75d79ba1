import type { Context } from "moleculer";
import { unauthorized } from "./errors";

/** Who a verified bearer token names (lib/users/jwt.ts signs and checks them). */
export interface AuthUser {
  id: string;
  /** Set when an API key made the request (lib/gateway/api-keys.ts): the key's id and scopes. */
  keyId?: string;
  scopes?: string[];
}

/**
 * What the gateway (services/api.service.ts) puts into `ctx.meta`, and what actions put
 * back for it: one contract for every service.
 */
export interface Meta {
  /** The caller, verified from the bearer JWT; null or absent when anonymous. */
  user?: AuthUser | null;
  /** "<user or anon:ip>:<Idempotency-Key>" when the request carried one. */
  idempotencyKey?: string;
  /** The HTTP status to answer with (moleculer-web); 200 when unset. */
  $statusCode?: number;
  /** Sent as the Location header (moleculer-web). */
  $location?: string;
  $responseHeaders?: Record<string, string>;
  /**
   * Set on the gateway's request when it became a long-lived stream (SSE): its time is the
   * stream's life, not a latency, and the request metrics leave it out of their times.
   */
  stream?: boolean;
}

/** A context as the gateway hands it to an action. */
export type GatewayContext<P = unknown> = Context<P, Meta>;

/** The caller's user id; 401 when the call is anonymous. */
export function requireUserId(ctx: GatewayContext): string {
  const id = ctx.meta.user?.id;
  if (!id) throw unauthorized();
  return id;
}

/** Answers 201 Created with the new resource's path in Location, and returns `body`. */
export function created<T>(ctx: GatewayContext, location: string, body: T): T {
  ctx.meta.$statusCode = 201;
  ctx.meta.$location = location;
  return body;
}
