import { describeAction, type ActionInfo } from "../lib/gateway/openapi/document";
import { defineMiddleware } from "../mixins/define";

/**
 * Moleculer middleware for every node (moleculer.config.ts): gives each action that has
 * an `openapi` property its describeAction() text, so that a gateway on another node
 * documents it as completely as one in the same process.
 */
export const OpenApiMiddleware = defineMiddleware({
  name: "OpenApi",
  serviceCreating(_service: unknown, schema: { actions?: Record<string, unknown> }) {
    const actions = schema.actions;
    if (!actions) return;
    const described: Record<string, unknown> = {};
    for (const [name, def] of Object.entries(actions)) {
      const action = def as ActionInfo | null;
      described[name] =
        action && typeof action === "object" && action.openapi
          ? { ...action, openapiDescription: describeAction(action) }
          : def;
    }
    schema.actions = described;
  },
});
