import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import type { ServiceBroker } from "moleculer";
import {
  buildOpenApi,
  type ActionInfo,
  type GatewayRoute,
  type OpenApiDocument,
  type StaticOperation,
} from "../lib/gateway/openapi/document";
import { HEALTH_OPERATIONS } from "../lib/gateway/openapi/health";

/**
 * The gateway route of the API's own description: GET /api/openapi.json (lib/gateway/openapi/document.ts,
 * built from the registry on each request, so it shows what the cluster serves now) and
 * GET /api/docs, Swagger UI from the swagger-ui-dist package, served from this process:
 * the page needs no network beyond the gateway. services/api.service.ts lists this route
 * with its others.
 */

/** What the aliases below use of the gateway service they run in. */
interface GatewayThis {
  broker: ServiceBroker;
  settings: { routes: GatewayRoute[] };
}
type Req = IncomingMessage & { $params?: Record<string, unknown> };

const UI_DIR = path.dirname(require.resolve("swagger-ui-dist/package.json"));

/** The page's files: a fixed set, read once. */
const ASSETS: Record<string, { type: string; file?: string; text?: string }> = {
  "swagger-ui.css": { type: "text/css; charset=utf-8", file: "swagger-ui.css" },
  "swagger-ui-bundle.js": {
    type: "text/javascript; charset=utf-8",
    file: "swagger-ui-bundle.js",
  },
  "favicon-32x32.png": { type: "image/png", file: "favicon-32x32.png" },
  // Its own file, not inline, so that a Content-Security-Policy without 'unsafe-inline' works.
  // validatorUrl null: Swagger UI would otherwise send the document to an online validator.
  "init.js": {
    type: "text/javascript; charset=utf-8",
    text: `window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null });\n`,
  },
};
const loaded = new Map<string, Buffer>();
function asset(name: string): Buffer {
  let body = loaded.get(name);
  if (!body) {
    const a = ASSETS[name];
    body = a.file ? readFileSync(path.join(UI_DIR, a.file)) : Buffer.from(a.text ?? "");
    loaded.set(name, body);
  }
  return body;
}

// Relative URLs: the page is /api/docs, so these are /api/docs/… and /api/openapi.json,
// also behind a proxy that mounts the API under another prefix.
const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>mintmesh API</title>
    <link rel="stylesheet" href="docs/swagger-ui.css" />
    <link rel="icon" type="image/png" href="docs/favicon-32x32.png" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="docs/swagger-ui-bundle.js"></script>
    <script src="docs/init.js"></script>
  </body>
</html>
`;

function send(res: ServerResponse, status: number, type: string, body: string | Buffer) {
  res.writeHead(status, {
    "Content-Type": type,
    "Content-Length": Buffer.byteLength(body),
    "X-Content-Type-Options": "nosniff",
  });
  res.end(body);
}

/** The document as this gateway sees the cluster now. */
export function openApiDocument(broker: ServiceBroker, routes: GatewayRoute[]): OpenApiDocument {
  const actions = new Map<string, ActionInfo>();
  const services = broker.registry.getServiceList({ withActions: true, onlyAvailable: true });
  // A local service first: its params keep their RegExps, which JSON (remote nodes) loses.
  services.sort((a, b) => Number(b.local) - Number(a.local));
  for (const s of services) {
    const list = (s as unknown as { actions?: Record<string, ActionInfo> }).actions ?? {};
    for (const [name, action] of Object.entries(list)) {
      if (!actions.has(name)) actions.set(name, action);
    }
  }
  return buildOpenApi({
    routes,
    action: name => actions.get(name),
    statics: { ...HEALTH_OPERATIONS, ...DOCS_OPERATIONS },
  });
}

/**
 * Building the document takes milliseconds of CPU and the route is public: each gateway
 * keeps its last one (one entry per gateway) for CACHE_MS, so a flood of requests cannot
 * turn into a flood of builds; a node that joins or leaves shows within that time.
 */
const CACHE_MS = 2000;
const built = new WeakMap<GatewayThis, { at: number; json: string }>();
function servedDocument(gateway: GatewayThis): string {
  const now = Date.now();
  const last = built.get(gateway);
  if (last && now - last.at < CACHE_MS) return last.json;
  const json = JSON.stringify(openApiDocument(gateway.broker, gateway.settings.routes));
  built.set(gateway, { at: now, json });
  return json;
}

const html = (summary: string, type: string, extra: Record<string, unknown> = {}) =>
  ({
    tags: ["docs"],
    summary,
    security: [],
    ...extra,
    responses: { 200: { description: "OK", content: { [type]: { schema: { type: "string" } } } } },
  }) satisfies StaticOperation;

/** The docs route's own aliases, for the document. */
export const DOCS_OPERATIONS: Record<string, StaticOperation> = {
  "get /api/openapi.json": {
    operationId: "docs.openapi",
    tags: ["docs"],
    summary: "This document (OpenAPI 3.1)",
    security: [],
    responses: {
      200: { description: "OK", content: { "application/json": { schema: { type: "object" } } } },
    },
  },
  "get /api/docs": html("The API's docs page (Swagger UI)", "text/html", {
    operationId: "docs.page",
  }),
  "get /api/docs/{file}": html("A file of the docs page", "*/*", {
    operationId: "docs.asset",
    parameters: [
      {
        name: "file",
        in: "path",
        required: true,
        schema: { enum: Object.keys(ASSETS) },
      },
    ],
  }),
};
DOCS_OPERATIONS["get /api/docs/{file}"].responses[404] = {
  $ref: "#/components/responses/NotFound",
};

export const openApiRoute = {
  name: "openapi",
  path: "/api",
  mappingPolicy: "restrict" as const,
  bodyParsers: { json: false, urlencoded: false },
  logging: false,
  aliases: {
    "GET openapi.json"(this: GatewayThis, _req: Req, res: ServerResponse) {
      send(res, 200, "application/json; charset=utf-8", servedDocument(this));
    },
    "GET docs"(this: GatewayThis, _req: Req, res: ServerResponse) {
      send(res, 200, "text/html; charset=utf-8", PAGE);
    },
    "GET docs/:file"(this: GatewayThis, req: Req, res: ServerResponse, next: (e?: Error) => void) {
      const name = String(req.$params?.file ?? "");
      if (!Object.hasOwn(ASSETS, name)) {
        const err = Object.assign(new Error("Not found"), { code: 404, type: "NOT_FOUND" });
        next(err);
        return;
      }
      send(res, 200, ASSETS[name].type, asset(name));
    },
  },
};
