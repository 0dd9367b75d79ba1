import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { ActionEndpoint } from "moleculer";
import type { GatewayContext } from "../shared/context";
import type { KeyedRequest } from "./idempotency";
import type { LoginAttempt } from "./login-throttle";
import type { RouteRateLimit } from "./rate-limit";
import type { MatchedAlias } from "./api-routes";
import type { OptionsGateway } from "./options-request";

/** What services/api.service.ts reads of moleculer-web's requests and routes. */

/** moleculer-web's request, as far as the gateway reads it. */
export type Req = IncomingMessage & {
  $ctx?: GatewayContext;
  $route?: { name?: string; rateLimit?: { store: { resetTime: number } } };
  $endpoint?: ActionEndpoint;
  $alias?: MatchedAlias;
  $params?: Record<string, unknown>;
  $idempotency?: KeyedRequest;
  /** A login being counted by the throttle (lib/gateway/login-throttle.ts). */
  $login?: LoginAttempt;
  originalUrl?: string;
  parsedUrl?: string;
  body?: unknown;
  query?: Record<string, unknown>;
};
export type Res = ServerResponse;

/** A moleculer-web route; what is not typed here is passed to it as it is. */
export interface Route {
  name: string;
  path: string;
  rateLimit?: RouteRateLimit;
  [option: string]: unknown;
}

/** What moleculer-web adds to the gateway service and it uses; its typings declare none of it. */
export interface GatewayParts extends OptionsGateway {
  sendError(req: Req, res: Res, err: Error): void;
  routes: Array<{ rateLimit?: { store: unknown } }>;
  server?: Server;
  isHTTPS: boolean;
}
