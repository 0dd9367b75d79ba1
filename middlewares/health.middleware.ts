import http from "node:http";
import type { Middleware, ServiceBroker } from "moleculer";
import { redisCacherDown } from "./cachers";
import { channelsOf } from "./channels";
import { envStr } from "../lib/shared/env";
import { sendJson } from "../lib/gateway/http-errors";
import { storeHealth } from "../lib/store/health";

/**
 * A tiny HTTP health endpoint for every node, for Kubernetes probes and Docker
 * HEALTHCHECKs: only the gateway has an HTTP server of its own, and a probe must
 * not depend on one. Off unless HEALTH_PORT is set.
 *
 *   GET /health/live   200 while the process runs (the event loop answers)
 *   GET /health/ready  200 once the broker has started and what it depends on answers;
 *                      503 before, while stopping, and while something is missing:
 *                      `missing` names it (nodeProblems below) and `reason` says why
 */

export interface HealthOptions {
  /** Defaults to HEALTH_PORT; no port, no server. */
  port?: number;
  /** Defaults to HEALTH_HOST or 0.0.0.0 (probes come from outside the container). */
  host?: string;
}

export interface HealthState {
  ready: boolean;
  reason?: string;
  /** What this node depends on and cannot reach or use now (empty while starting or stopping). */
  missing: string[];
}

/**
 * What this node depends on that does not answer, by name, as readiness reports it:
 *  - "nats": the transporter is not connected (no calls in or out);
 *  - "channels": the durable events' adapter is not connected (no outbox relay, no read models);
 *  - "redis": the Redis cacher has no connection (cached actions would wait on it);
 *  - "<service>/<collection>: <error>": a store of this node cannot write (a full disk).
 */
export function nodeProblems(broker: ServiceBroker): string[] {
  const missing: string[] = [];
  // No transporter: a single-process node needs none.
  if (broker.transit && !(broker.transit.connected && broker.transit.isReady)) missing.push("nats");
  if (channelsOf(broker).channelAdapter?.connected === false) missing.push("channels");
  if (redisCacherDown(broker.cacher)) missing.push("redis");
  missing.push(...storeHealth.problems());
  return missing;
}

const REASONS: Record<string, string> = {
  nats: "transporter disconnected",
  channels: "channels adapter disconnected",
  redis: "redis unreachable",
};

/** Why this node is not ready, or ready. */
export function healthState(broker: ServiceBroker, stopping: boolean): HealthState {
  if (stopping) return { ready: false, reason: "stopping", missing: [] };
  if (!broker.started) return { ready: false, reason: "starting", missing: [] };
  const missing = nodeProblems(broker);
  if (missing.length === 0) return { ready: true, missing };
  const reason = missing.map(m => REASONS[m] ?? `store cannot write: ${m}`).join("; ");
  return { ready: false, reason, missing };
}

export function HealthMiddleware(opts: HealthOptions = {}): Middleware {
  const portText = opts.port !== undefined ? String(opts.port) : envStr("HEALTH_PORT");
  if (!portText) return { name: "Health" };
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`HEALTH_PORT must be a port number, got "${portText}"`);
  const host = opts.host ?? envStr("HEALTH_HOST", "0.0.0.0");

  let server: http.Server | undefined;
  let listening: Promise<void> | undefined;
  let stopping = false;

  return {
    name: "Health",

    // Listens from creation on, so liveness answers while services are still starting.
    created(broker: ServiceBroker) {
      server = http.createServer((req, res) => {
        const path = (req.url ?? "").split("?")[0];
        if (req.method !== "GET" && req.method !== "HEAD") return sendJson(res, 405, {});
        if (path === "/health/live")
          return sendJson(res, 200, { status: "ok", nodeID: broker.nodeID });
        if (path === "/health/ready") {
          const state = healthState(broker, stopping);
          return state.ready
            ? sendJson(res, 200, { status: "ok", nodeID: broker.nodeID })
            : sendJson(res, 503, {
                status: "unavailable",
                nodeID: broker.nodeID,
                reason: state.reason,
                missing: state.missing,
              });
        }
        sendJson(res, 404, { status: "not found" });
      });
      // Probes must never keep a stopping process alive.
      server.keepAliveTimeout = 1000;
      listening = new Promise<void>((resolve, reject) => {
        server!.once("error", reject);
        server!.listen(port, host, () => {
          server!.off("error", reject);
          resolve();
        });
      });
      // Reported by `starting` below; this only keeps the rejection from going unhandled first.
      listening.catch(() => undefined);
    },

    // A port already taken fails the start loudly instead of leaving probes failing.
    async starting(broker: ServiceBroker) {
      await listening;
      const addr = server?.address();
      if (addr && typeof addr === "object")
        broker.logger.info(`Health endpoint on http://${host}:${addr.port}/health/{live,ready}`);
    },

    async stopping() {
      stopping = true;
    },

    async stopped() {
      const srv = server;
      server = undefined;
      if (!srv?.listening) return;
      srv.closeAllConnections();
      await new Promise<void>(resolve => srv.close(() => resolve()));
    },
  };
}
