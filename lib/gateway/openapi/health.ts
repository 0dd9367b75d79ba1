import type { JsonSchema, StaticOperation } from "./document";

/** The health routes of the gateway (services/api.service.ts), which are function aliases. */
export const HEALTH_OPERATIONS: Record<string, StaticOperation> = {
  "get /health/live": {
    operationId: "health.live",
    tags: ["health"],
    summary: "The process runs",
    security: [],
    responses: {
      200: {
        description: "OK",
        content: { "application/json": { schema: healthBody(false) } },
      },
    },
  },
  "get /health/ready": {
    operationId: "health.ready",
    tags: ["health"],
    summary: "A node of every service in READY_SERVICES is reachable (and Redis, when set)",
    security: [],
    responses: {
      200: { description: "Ready", content: { "application/json": { schema: healthBody(false) } } },
      503: {
        description: "Not ready: what is missing",
        content: { "application/json": { schema: healthBody(true) } },
      },
    },
  },
};

function healthBody(missing: boolean): JsonSchema {
  return missing
    ? {
        type: "object",
        required: ["status", "missing"],
        additionalProperties: false,
        properties: {
          status: { const: "unavailable" },
          missing: { type: "array", items: { type: "string" } },
        },
      }
    : {
        type: "object",
        required: ["status"],
        additionalProperties: false,
        properties: { status: { const: "ok" } },
      };
}
