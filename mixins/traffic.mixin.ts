import type { IncomingHttpHeaders } from "node:http";
import {
  Errors,
  type ActionEndpoint,
  type ActionSchema,
  type Context,
  type ServiceSettingSchema,
} from "moleculer";
import { envStr } from "../lib/shared/env";
import { validationError } from "../lib/shared/errors";
import {
  chooseVersion,
  parseTraffic,
  versionedActionName,
  type TrafficConfig,
} from "../lib/observability/traffic";
import { defineMixin } from "./define";

/**
 * Gateway mixin: version routing like an Istio VirtualService (see lib/observability/traffic.ts for the
 * CANARY format). moleculer-web resolves an alias to `req.$endpoint` and later calls exactly
 * that endpoint (`ctx.call(req.$endpoint, …)`); a route's `onBeforeCall` runs in between, so
 * swapping `req.$endpoint` there sends the request to another version. Retries keep the
 * version: the retry middleware calls the endpoint's action name, e.g. `v2.catalog.list`.
 *
 * Wiring (services/api.service.ts): `mixins: [ApiGateway, TrafficMixin]`, and on a route
 *   onBeforeCall(ctx, route, req) { this.routeTraffic(ctx, req); }
 * The split is the `canary` setting (default: the CANARY env).
 */

/** What the mixin reads and sets on moleculer-web's request. */
export interface TrafficRequest {
  headers: IncomingHttpHeaders;
  $endpoint?: ActionEndpoint;
  $action?: ActionSchema;
}

export interface TrafficMethods {
  /** Picks the version for this request and points `req.$endpoint` at it. */
  routeTraffic(ctx: Context, req: TrafficRequest): void;
}

export interface TrafficVars {
  traffic: TrafficConfig;
}

export interface TrafficSettings extends ServiceSettingSchema {
  /** The split, in the CANARY format of lib/observability/traffic.ts; unset or empty: no routing. */
  canary?: string;
}

export const VERSION_HEADER = "x-version";

export const TrafficMixin = defineMixin<TrafficSettings, TrafficMethods, TrafficVars>({
  settings: { canary: envStr("CANARY") },

  methods: {
    routeTraffic(ctx: Context, req: TrafficRequest): void {
      const endpoint = req.$endpoint;
      if (!endpoint || this.traffic.size === 0) return;
      const svc = endpoint.service;
      // Only aliases of the unversioned (v1) service are routed; an alias naming a version stays.
      if (svc.version !== undefined && svc.version !== null) return;
      const actionName = endpoint.action.name ?? "";
      const rawAction = actionName.slice(svc.fullName.length + 1);

      const raw = req.headers[VERSION_HEADER];
      const header = Array.isArray(raw) ? raw[0] : raw;
      const registry = this.broker.registry;
      const decision = chooseVersion(this.traffic, svc.name, header, version => {
        const list = registry.getActionEndpoints(versionedActionName(svc.name, version, rawAction));
        return Boolean(list?.hasAvailable());
      });

      switch (decision.kind) {
        case "keep":
          return;
        case "bad-header":
          throw validationError(VERSION_HEADER, "must be a version such as v2");
        case "unavailable":
          throw new Errors.ServiceNotAvailableError({
            action: versionedActionName(svc.name, decision.version, rawAction),
          });
        case "version": {
          const target = versionedActionName(svc.name, decision.version, rawAction);
          if (target === actionName) return;
          const next = this.broker.findNextActionEndpoint(target, {}, ctx);
          if (next instanceof Error) {
            // Went away since the availability check: a pinned request fails, a split one stays.
            if (decision.pinned) throw next;
            return;
          }
          req.$endpoint = next;
          req.$action = next.action;
        }
      }
    },
  },

  created() {
    // Parsed at start: a bad CANARY stops the gateway instead of misrouting traffic.
    this.traffic = parseTraffic(this.settings.canary);
    if (this.traffic.size > 0) {
      const text = [...this.traffic]
        .map(([s, vs]) => `${s}: ${vs.map(v => `${v.version}=${v.weight}`).join(", ")}`)
        .join("; ");
      this.logger.info(`Traffic split: ${text}`);
    }
  },
});
