import http from "node:http";
import { ServiceBroker, type BrokerOptions, type Context, type ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { tokenDoc } from "./common";

/**
 * One process of an anchor (bench/anchors.ts) or of the round-trip bench (bench/rtt.ts):
 * `node dist/bench/anchor-server.js <mode>`, configured by env. HTTP servers listen on
 * PORT (gateways proxy to UPSTREAM_PORT); nodes without HTTP print "READY" once they serve.
 * Moleculer anchors are Moleculer as a team gets it: default options, JSON over NATS.
 *
 * env: PORT, UPSTREAM_PORT, NATS_URL, NAMESPACE, NODE_ID (pg-transfers: bench/pg-anchor.ts).
 */

const mode = process.argv[2];
const port = Number(process.env.PORT ?? 0);
const upstream = `http://127.0.0.1:${process.env.UPSTREAM_PORT ?? 0}`;
// Moleculer takes a URL; its typings list transporter names only.
const natsUrl = (process.env.NATS_URL ?? "nats://127.0.0.1:4222") as BrokerOptions["transporter"];

interface IdParams {
  id: string;
}

/** The trivial action every Moleculer anchor calls. */
const benchService: ServiceSchema = {
  name: "bench",
  actions: {
    token: {
      params: { id: "string" },
      handler: (ctx: Context<IdParams>) => tokenDoc(ctx.params.id),
    },
  },
};

const gatewayService: ServiceSchema<Record<string, unknown>> = {
  name: "api",
  mixins: [ApiGateway],
  settings: {
    port,
    ip: "127.0.0.1",
    routes: [
      { path: "/api", mappingPolicy: "restrict", aliases: { "GET tokens/:id": "bench.token" } },
    ],
    logRequest: null,
    logResponse: null,
  },
};

function broker(extra: BrokerOptions = {}): ServiceBroker {
  return new ServiceBroker({
    nodeID: process.env.NODE_ID,
    namespace: process.env.NAMESPACE,
    logger: false,
    ...extra,
  });
}

async function main(): Promise<void> {
  switch (mode) {
    case "bare": {
      // What node:http alone costs: the floor under every other case.
      http
        .createServer((req, res) => {
          const id = (req.url ?? "").split("/").pop() ?? "";
          const body = JSON.stringify(tokenDoc(id));
          res.writeHead(200, {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": Buffer.byteLength(body),
          });
          res.end(body);
        })
        .listen(port, "127.0.0.1");
      return;
    }
    case "mweb-local": {
      const b = broker();
      b.createService(benchService);
      b.createService(gatewayService);
      await b.start();
      return;
    }
    case "mweb-gateway": {
      const b = broker({ transporter: natsUrl });
      b.createService(gatewayService);
      await b.start();
      await b.waitForServices(["bench"], 30_000);
      console.log("READY");
      return;
    }
    case "mweb-service": {
      const b = broker({ transporter: natsUrl });
      b.createService(benchService);
      await b.start();
      console.log("READY");
      return;
    }
    case "express-service": {
      const { default: express } = await import("express");
      const app = express();
      app.get("/api/tokens/:id", (req, res) => {
        res.json(tokenDoc(req.params.id));
      });
      app.listen(port, "127.0.0.1");
      return;
    }
    case "express-gateway": {
      const { default: express } = await import("express");
      const { default: httpProxy } = await import("http-proxy");
      // Keep-alive to the service, as any production proxy is configured.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
      const proxy = httpProxy.createProxyServer({ target: upstream, agent });
      const app = express();
      app.get("/api/tokens/:id", (req, res) => {
        proxy.web(req, res, {}, () => {
          if (!res.headersSent) res.status(502).end();
        });
      });
      app.listen(port, "127.0.0.1");
      return;
    }
    case "fastify-service": {
      const { default: Fastify } = await import("fastify");
      const app = Fastify({ logger: false });
      app.get<{ Params: IdParams }>("/api/tokens/:id", async req => tokenDoc(req.params.id));
      await app.listen({ port, host: "127.0.0.1" });
      return;
    }
    case "fastify-gateway": {
      const { default: Fastify } = await import("fastify");
      const { default: proxy } = await import("@fastify/http-proxy");
      const app = Fastify({ logger: false });
      await app.register(proxy, { upstream, prefix: "/api", rewritePrefix: "/api" });
      await app.listen({ port, host: "127.0.0.1" });
      return;
    }
    case "pg-transfers": {
      // Anchor l: the transfer route on Fastify + PostgreSQL (bench/pg-anchor.ts).
      const { servePgTransfers } = await import("./pg-anchor");
      await servePgTransfers(port);
      return;
    }
    case "echo": {
      // The remote end of bench/rtt.ts: a node with the platform's own broker options
      // (middlewares, serializer, validator), so the round trip is what our calls pay.
      const { default: config } = await import("../moleculer.config");
      const b = new ServiceBroker({ ...config, logger: false, metrics: false, tracing: false });
      b.createService({
        name: "bench",
        actions: {
          echo: { params: { id: "string" }, handler: (ctx: Context<IdParams>) => ctx.params },
        },
      });
      await b.start();
      console.log("READY");
      return;
    }
    case "nats-echo": {
      // The same round trip on the nats package alone: the floor for broker.call.
      const { connect } = await import("nats");
      const nc = await connect({ servers: new URL(String(natsUrl)).host });
      nc.subscribe(`${process.env.NAMESPACE}.echo`, {
        callback: (err, msg) => {
          if (!err) msg.respond(msg.data);
        },
      });
      await nc.flush();
      console.log("READY");
      return;
    }
    default:
      throw new Error(`unknown mode "${mode}"`);
  }
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
