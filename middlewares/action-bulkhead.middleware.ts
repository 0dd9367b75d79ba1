import type { Middleware, ServiceSchema } from "moleculer";

/**
 * A bulkhead on every action, not on event handlers. The broker's own `bulkhead`
 * option wraps both, and with the in-memory channels adapter a full queue would drop a
 * domain event for good; event consumers are bounded by their channel's maxInFlight
 * instead. An action's own `bulkhead` settings win (e.g. `api.rest` turns it off).
 */
export function ActionBulkheadMiddleware(defaults: {
  concurrency: number;
  maxQueueSize: number;
}): Middleware {
  return {
    name: "ActionBulkhead",
    serviceCreating(_service, schema: ServiceSchema) {
      const actions = schema.actions ?? {};
      for (const [name, def] of Object.entries(actions)) {
        if (def === false || def === true || def == null) continue;
        if (typeof def === "function") {
          actions[name] = { handler: def, bulkhead: { enabled: true, ...defaults } };
        } else {
          def.bulkhead = { enabled: true, ...defaults, ...def.bulkhead };
        }
      }
    },
  };
}
