import type { Middleware, ServiceSchema, ServiceSettingSchema } from "moleculer";

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
