import { objectSchema, type JsonSchema } from "./rules";
import { SECRET_ANSWER_ROUTES, keyScopeOf } from "../api-routes";

/**
 * The OpenAPI 3.1 document of the gateway, built when asked from what runs: the gateway's
 * route tables (each alias: method, path, the route's authentication) and the actions
 * they call as the registry has them (their fastest-validator `params`, and the
 * `openapi` property beside each handler: summary, success status, response schema). No
 * annotation is written twice, so the document cannot drift from the code. Why not
 * moleculer-auto-openapi: docs/api.md "The OpenAPI document".
 */

/** The schema type lives with the rules (lib/gateway/openapi/rules.ts), which this file builds on. */
export type { JsonSchema };

/** What an action tells the document besides its params (types/moleculer.d.ts). */
export interface ActionOpenApi {
  summary: string;
  description?: string;
  /** The success status: 200 unless said. */
  status?: number;
  /** Other success statuses answering the same shape (e.g. 202 while a saga runs). */
  alsoStatus?: number[];
  /** The success body's JSON Schema; shapes named with named() become components. */
  response: JsonSchema;
  /** Client errors of its own besides those every route has (403, 409, 422 …). */
  errors?: number[];
}

/** A schema that goes into components.schemas under `name` and is referenced from there. */
export function named(name: string, schema: JsonSchema): JsonSchema {
  return { title: name, ...schema };
}

/** A moleculer-web route as the gateway's settings hold it. */
export interface GatewayRoute {
  name?: string;
  path: string;
  authentication?: boolean;
  aliases?: Record<string, unknown>;
  /** Descriptions of the route's function aliases, by alias key ("GET live"). */
  openapi?: Record<string, StaticOperation>;
}

/** An action as the registry describes it (remote ones have gone through JSON). */
export interface ActionInfo {
  params?: unknown;
  openapi?: ActionOpenApi;
  /** describeAction() of it, set where it runs (OpenApiMiddleware): what another node reads. */
  openapiDescription?: string;
}

/** What the document needs of an action: its params as one object schema, its `openapi`. */
interface ActionDescription {
  params: JsonSchema;
  openapi?: ActionOpenApi;
}

/**
 * The action's description as JSON text, made on the node that runs it. Moleculer sends an
 * action's definition to other nodes through JSON with a replacer that drops every object
 * it has seen before in the node's info (lib/gateway/openapi/schemas.ts' shapes, `from` and `to` both
 * being accountParam), and JSON loses RegExps and functions (patterns, amountRule); a
 * string passes whole.
 */
export function describeAction(action: ActionInfo): string {
  return JSON.stringify({
    params: objectSchema((action.params ?? {}) as Record<string, unknown>),
    openapi: action.openapi,
  } satisfies ActionDescription);
}

function descriptionOf(action: ActionInfo): ActionDescription {
  if (typeof action.openapiDescription === "string") {
    return JSON.parse(action.openapiDescription) as ActionDescription;
  }
  // No middleware on that node: the definition as it came (complete when local).
  return JSON.parse(describeAction(action)) as ActionDescription;
}

/** An operation served by a function alias (health, the docs): written out in full. */
export type StaticOperation = { summary: string; responses: Record<string, unknown> } & Record<
  string,
  unknown
>;

export interface OpenApiDocument {
  openapi: string;
  info: Record<string, unknown>;
  tags: Array<{ name: string }>;
  paths: Record<string, Record<string, Record<string, unknown>>>;
  components: Record<string, Record<string, unknown>>;
}

export const ERROR_BODY: JsonSchema = named("ErrorBody", {
  type: "object",
  required: ["error"],
  additionalProperties: false,
  properties: {
    error: {
      type: "object",
      required: ["type", "message", "requestId"],
      additionalProperties: false,
      properties: {
        type: { type: "string" },
        message: { type: "string" },
        requestId: { type: "string" },
        data: {},
      },
    },
  },
});

/** The error statuses of docs/api.md, by the name their response has in components. */
const ERRORS: Record<number, { name: string; description: string; retryAfter?: boolean }> = {
  400: { name: "ValidationError", description: "VALIDATION_ERROR: bad body, path or query" },
  401: { name: "Unauthorized", description: "UNAUTHORIZED: missing, malformed or expired token" },
  403: {
    name: "Forbidden",
    description:
      "FORBIDDEN: authenticated but not allowed (an API key: `data.scope` names the scope it lacks)",
  },
  404: { name: "NotFound", description: "NOT_FOUND: unknown route or id" },
  409: {
    name: "Conflict",
    description: "CONFLICT: a unique value taken, a state changed, an Idempotency-Key reused",
  },
  413: { name: "PayloadTooLarge", description: "PAYLOAD_TOO_LARGE: body over 1 MB" },
  415: {
    name: "UnsupportedMediaType",
    description: "UNSUPPORTED_MEDIA_TYPE: a body that is not application/json",
  },
  422: {
    name: "BusinessRule",
    description: "A business rule refused it (INSUFFICIENT_FUNDS, SUPPLY_EXCEEDED …)",
  },
  429: { name: "RateLimited", description: "RATE_LIMITED", retryAfter: true },
  500: { name: "InternalError", description: "INTERNAL_ERROR: 'Internal server error'" },
  503: {
    name: "ServiceUnavailable",
    description: "SERVICE_UNAVAILABLE: no node serves it now, a timeout, an open circuit",
    retryAfter: true,
  },
};

const WRITE_METHODS = new Set(["post", "put", "patch"]);
const ref = (kind: string, name: string) => ({ $ref: `#/components/${kind}/${name}` });

function components(): OpenApiDocument["components"] {
  const responses: Record<string, unknown> = {};
  for (const e of Object.values(ERRORS)) {
    responses[e.name] = {
      description: e.description,
      headers: {
        "X-Request-ID": ref("headers", "XRequestId"),
        ...(e.retryAfter ? { "Retry-After": ref("headers", "RetryAfter") } : {}),
      },
      content: { "application/json": { schema: ERROR_BODY } },
    };
  }
  return {
    schemas: {},
    responses,
    parameters: {
      IdempotencyKey: {
        name: "Idempotency-Key",
        in: "header",
        required: false,
        description:
          "The same key from the same user with the same request gets the first answer again (24 h)",
        schema: { type: "string", minLength: 1, maxLength: 255 },
      },
    },
    headers: {
      XRequestId: { description: "The request's id (quote it)", schema: { type: "string" } },
      RetryAfter: { description: "Seconds to wait", schema: { type: "integer" } },
      Location: { description: "Where the resource is", schema: { type: "string" } },
      IdempotentReplayed: {
        description: "`true` when this is the first answer to an Idempotency-Key again",
        schema: { type: "string", enum: ["true"] },
      },
    },
    securitySchemes: {
      bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" },
      apiKey: {
        type: "http",
        scheme: "bearer",
        bearerFormat: "mm_ API key",
        description:
          "An API key (`Authorization: Bearer mm_…`, made with POST /api/keys): acts as its " +
          "owner on the routes its scopes allow; each operation names the scope it needs.",
      },
      // The live stream's browser session (POST /api/me/events/session).
      eventsCookie: { type: "apiKey", in: "cookie", name: "mintmesh_events" },
    },
  };
}

/** "GET users/:id" → ["get", "users/{id}", ["id"]]; null for a key without a method. */
export function parseAlias(key: string): { method: string; path: string; pathParams: string[] } {
  const match = /^([A-Za-z]+)\s+(.*)$/.exec(key.trim());
  if (!match) throw new Error(`Alias without a method: "${key}"`);
  const pathParams: string[] = [];
  const path = match[2].replace(/:([A-Za-z0-9_]+)\??/g, (_m, name: string) => {
    pathParams.push(name);
    return `{${name}}`;
  });
  return { method: match[1].toLowerCase(), path, pathParams };
}

const joinPath = (base: string, path: string) =>
  `/${[base, path]
    .map(p => p.replace(/^\/+|\/+$/g, ""))
    .filter(Boolean)
    .join("/")}`;

// ── the document ─────────────────────────────────────────────────────────────────────

function successResponse(
  status: number,
  schema: JsonSchema,
  keyed: boolean,
): Record<string, unknown> {
  const headers: Record<string, unknown> = { "X-Request-ID": ref("headers", "XRequestId") };
  if (status === 201 || status === 202) headers.Location = ref("headers", "Location");
  if (keyed) headers["Idempotent-Replayed"] = ref("headers", "IdempotentReplayed");
  const description = { 200: "OK", 201: "Created", 202: "Accepted: still running" }[status];
  return {
    description: description ?? "Success",
    headers,
    content: { "application/json": { schema } },
  };
}

function actionOperation(
  route: GatewayRoute,
  method: string,
  pathParams: string[],
  actionName: string,
  action: ActionInfo | undefined,
  aliasKey: string,
): Record<string, unknown> {
  const tag = actionName.split(".")[0];
  // An API key too where its scope table lets one in, the scope it needs named.
  const scope = keyScopeOf(aliasKey);
  const withKey = [{ bearer: [] }, ...(scope ? [{ apiKey: [scope] }] : [])];
  const security =
    route.name === "private" ? withKey : route.authentication ? [{}, ...withKey] : [];
  if (!action) {
    // Listed in the tables, served by no node now: what the gateway answers is a 503.
    return {
      operationId: actionName,
      tags: [tag],
      summary: `${actionName} (no node serves it now)`,
      security,
      responses: { 503: ref("responses", ERRORS[503].name) },
    };
  }
  const { params, openapi: meta } = descriptionOf(action);
  const props = (params.properties ?? {}) as Record<string, JsonSchema>;
  const parameters: unknown[] = pathParams.map(name => ({
    name,
    in: "path",
    required: true,
    schema: props[name] ?? { type: "string" },
  }));
  const restProps = Object.fromEntries(
    Object.entries(props).filter(([name]) => !pathParams.includes(name)),
  );
  const restRequired = ((params.required ?? []) as string[]).filter(n => !pathParams.includes(n));
  const rest: JsonSchema = {
    type: "object",
    properties: restProps,
    ...(restRequired.length ? { required: restRequired } : {}),
  };
  let requestBody: Record<string, unknown> | undefined;
  if (WRITE_METHODS.has(method)) {
    if (Object.keys(restProps).length > 0) {
      requestBody = {
        required: restRequired.length > 0,
        content: { "application/json": { schema: rest } },
      };
    }
  } else {
    for (const [name, schema] of Object.entries(restProps)) {
      parameters.push({ name, in: "query", required: restRequired.includes(name), schema });
    }
  }
  const keyed = method === "post" && !SECRET_ANSWER_ROUTES.has(aliasKey);
  if (keyed) parameters.push(ref("parameters", "IdempotencyKey"));

  const responses: Record<string, unknown> = {};
  const response = meta?.response ?? {};
  for (const status of [meta?.status ?? 200, ...(meta?.alsoStatus ?? [])]) {
    responses[status] = successResponse(status, response, keyed);
  }
  const errors = new Set([400, 401, 429, 500, 503, ...(meta?.errors ?? [])]);
  // An API key outside its scopes, or on a route closed to keys, is refused.
  if (route.authentication) errors.add(403);
  if (pathParams.length) errors.add(404);
  if (WRITE_METHODS.has(method)) [413, 415].forEach(s => errors.add(s));
  if (method === "post") errors.add(409);
  for (const status of [...errors].sort((a, b) => a - b))
    responses[status] = ref("responses", ERRORS[status].name);

  return {
    operationId: actionName,
    tags: [tag],
    summary: meta?.summary ?? actionName,
    ...(meta?.description ? { description: meta.description } : {}),
    security,
    ...(parameters.length ? { parameters } : {}),
    ...(requestBody ? { requestBody } : {}),
    responses,
  };
}

/** A function alias nobody described (a page of its own, not the REST API): listed as such. */
function undescribed(route: GatewayRoute, method: string, path: string): StaticOperation {
  return {
    operationId: `${route.name ?? "route"}.${method}${path.replace(/[^A-Za-z0-9]+/g, "_")}`,
    tags: [route.name ?? "other"],
    summary: `${method.toUpperCase()} ${path}`,
    description: "Not described in this document.",
    security: [],
    responses: { default: { description: "Not described" } },
  };
}

/** Moves every named schema (see named()) into components.schemas, leaving a $ref. */
function hoistNamed(node: unknown, schemas: Record<string, unknown>): unknown {
  if (Array.isArray(node)) return node.map(n => hoistNamed(n, schemas));
  if (!node || typeof node !== "object") return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) out[k] = hoistNamed(v, schemas);
  const title = out.title;
  if (typeof title !== "string" || "$ref" in out) return out;
  const { title: _t, ...schema } = out;
  const known = schemas[title];
  if (known !== undefined && JSON.stringify(known) !== JSON.stringify(schema)) {
    throw new Error(`Two different schemas are named ${title}`);
  }
  schemas[title] = schema;
  return ref("schemas", title);
}

export interface BuildOptions {
  /** The gateway's routes (its settings.routes), in their order. */
  routes: GatewayRoute[];
  /** An action as the registry knows it, by name; undefined when no node serves it. */
  action(name: string): ActionInfo | undefined;
  /** Function aliases, by "<method> <full path>" ("get /health/live"). */
  statics: Record<string, StaticOperation>;
}

export function buildOpenApi({ routes, action, statics }: BuildOptions): OpenApiDocument {
  const doc: OpenApiDocument = {
    openapi: "3.1.0",
    info: {
      title: "mintmesh REST API",
      version: "1",
      description:
        "Tokens (ERC-20 rules), NFTs (ERC-721 rules), a marketplace and token launches. " +
        "Conventions (amounts, lists, errors, Idempotency-Key, rate limits): docs/api.md.",
    },
    tags: [],
    paths: {},
    components: components(),
  };
  const tags = new Set<string>();
  for (const route of routes) {
    for (const [key, target] of Object.entries(route.aliases ?? {})) {
      const { method, path, pathParams } = parseAlias(key);
      const fullPath = joinPath(route.path, path);
      let op: Record<string, unknown>;
      if (typeof target === "string") {
        op = actionOperation(route, method, pathParams, target, action(target), key.trim());
      } else {
        op =
          route.openapi?.[key] ??
          statics[`${method} ${fullPath}`] ??
          undescribed(route, method, fullPath);
      }
      for (const t of (op.tags ?? []) as string[]) tags.add(t);
      doc.paths[fullPath] ??= {};
      // The first route with an alias wins, as in moleculer-web.
      doc.paths[fullPath][method] ??= op;
    }
  }
  doc.tags = [...tags].map(name => ({ name }));
  const schemas: Record<string, unknown> = {};
  doc.paths = hoistNamed(doc.paths, schemas) as OpenApiDocument["paths"];
  doc.components = hoistNamed(doc.components, schemas) as OpenApiDocument["components"];
  doc.components.schemas = Object.fromEntries(
    Object.entries(schemas).sort(([a], [b]) => a.localeCompare(b)),
  );
  return doc;
}
