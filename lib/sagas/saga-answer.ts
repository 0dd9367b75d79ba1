import { clientError } from "../shared/errors";
import type { GatewayContext } from "../shared/context";
import type { Saga } from "./saga-log";

/**
 * The answer of a route that ran a saga and waited for it (the market's offers and
 * auctions): its result once completed; 202 with `Location` and what `pending` reads while
 * it still runs; the refusal that undid it (a 4xx); anything else a 500.
 */
export async function sagaAnswer<T>(
  ctx: GatewayContext,
  saga: Saga,
  location: string,
  done: (result: unknown) => T,
  pending: () => Promise<unknown>,
): Promise<T> {
  if (saga.state === "completed") return done(saga.result);
  if (saga.state === "running" || saga.state === "compensating") {
    ctx.meta.$statusCode = 202;
    ctx.meta.$responseHeaders = { ...ctx.meta.$responseHeaders, Location: location };
    return (await pending()) as T;
  }
  const e = saga.error;
  if (saga.state === "compensated" && e && e.type !== "INTERNAL_ERROR")
    throw clientError(e.type, e.message);
  throw new Error(`Saga ${saga.id} (${saga.type}) ended ${saga.state}`);
}
