import type { Context, Middleware, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { sagaStepParams } from "../lib/shared/params";

/**
 * A mixin written against its own settings, methods and vars, so the compiler checks
 * `this` inside it. Moleculer types `mixins` as default-typed schemas, and a typed `this`
 * in handlers is contravariant, so the checked schema is handed over as that type here,
 * once, instead of a cast in every mixin.
 */
export function defineMixin<
  S extends ServiceSettingSchema = ServiceSettingSchema,
  M = Record<string, never>,
  V = Record<string, never>,
>(schema: Partial<ServiceSchema<S, M, V>>): Partial<ServiceSchema> {
  return schema as unknown as Partial<ServiceSchema>;
}

/**
 * A broker middleware written with the hooks' real signatures. Moleculer's `Middleware`
 * type does not match several hooks as the broker calls them (`call` with an endpoint for
 * a name, `transporterSend` returning the wrapped send), so the checked object is handed
 * over as that type here, once, instead of a cast in every middleware.
 */
export function defineMiddleware<T extends { name: string }>(
  middleware: T,
): Middleware & { name: string } {
  return middleware as unknown as Middleware & { name: string };
}

/**
 * An internal action a saga step calls with nothing but the document's id and the saga's
 * (sagaStepParams), answered by `call` on the service it is in (a book's method).
 */
export function sagaStepAction<T>(call: (self: T, id: string, sagaId: string) => Promise<unknown>) {
  return {
    visibility: "public" as const,
    params: sagaStepParams,
    handler(this: T, ctx: Context<{ id: string; sagaId: string }>) {
      return call(this, ctx.params.id, ctx.params.sagaId);
    },
  };
}
