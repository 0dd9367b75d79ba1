import type { ServiceSchema, ServiceSettingSchema } from "moleculer";

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
