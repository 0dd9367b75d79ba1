import type { GatewayContext } from "./context";
import { newId } from "./ids";

/**
 * The idempotency key of a state-changing call, scoped to its caller: the gateway's
 * Idempotency-Key ("<user>:<key>"); else the HTTP request (a broker retry of the
 * gateway's call keeps its parent id); else none that repeats.
 */
export function callerKey(ctx: GatewayContext): string {
  if (ctx.meta.idempotencyKey) return `key:${ctx.meta.idempotencyKey}`;
  if (ctx.caller === "api" && ctx.parentID) return `req:${ctx.parentID}`;
  return `once:${newId("k")}`;
}
