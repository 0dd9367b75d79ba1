import type { components, paths } from "./schema";

/**
 * A small typed client of the mintmesh REST API, over fetch. Its types come from
 * client/schema.d.ts, which openapi-typescript makes from the committed client/openapi.json
 * (the document the gateway serves at GET /api/openapi.json) at install, build, typecheck
 * and lint (`npm run gen:types`; `npm run gen:client` writes the document anew). So a
 * call names a documented path and method, and its path parameters, query, body and
 * the answer's body for each status are those of the document:
 *
 *   const api = new MintmeshClient("http://localhost:3000");
 *   const res = await api.request("post", "/api/tokens/{id}/transfers", {
 *     path: { id }, body: { to, amount: "250" }, token,
 *   });
 *   if (res.status === 201) res.body.amount; // a Transfer
 *
 * Copy client/ into a web app as it is: it needs fetch and nothing else.
 */

export type Method = "get" | "post" | "put" | "patch" | "delete";

/** The documented paths that take `M`. */
export type PathsWith<M extends Method> = {
  [P in keyof paths]: paths[P][M] extends undefined ? never : P;
}[keyof paths];

/** The operation of `M` on `P`. */
export type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;

type ParamsOf<O> = O extends { parameters: infer X } ? X : never;
type PathParamsOf<O> = ParamsOf<O> extends { path: infer X } ? X : never;
type QueryOf<O> = ParamsOf<O> extends { query?: infer X } ? X : never;
type BodyOf<O> = O extends { requestBody?: { content: { "application/json": infer B } } }
  ? B
  : never;
type BodyRequired<O> = O extends { requestBody: object } ? true : false;

/** What a call takes besides its method and path: only the parts its operation has. */
export type RequestOptions<O> = {
  /** The bearer token (a user's `token` from register or login). */
  token?: string;
  headers?: Record<string, string>;
} & ([PathParamsOf<O>] extends [never] ? { path?: never } : { path: PathParamsOf<O> }) &
  ([QueryOf<O>] extends [never] | [undefined] ? { query?: never } : { query?: QueryOf<O> }) &
  ([BodyOf<O>] extends [never]
    ? { body?: never }
    : BodyRequired<O> extends true
      ? { body: BodyOf<O> }
      : { body?: BodyOf<O> });

type JsonOf<R> = R extends { content: { "application/json": infer B } } ? B : undefined;
type ResponsesOf<O> = O extends { responses: infer R } ? R : never;

/** An answer: for each documented status, its body's type; narrow it by `status`. */
export type ApiResponse<O> = {
  [S in keyof ResponsesOf<O>]: {
    status: S;
    body: JsonOf<ResponsesOf<O>[S]>;
    headers: Headers;
    text: string;
  };
}[keyof ResponsesOf<O>];

/** The docs/api.md error shape. */
export type ErrorBody = components["schemas"]["ErrorBody"];
export type Schemas = components["schemas"];

/** A response as it came, its body parsed when it is JSON. */
export interface RawResponse {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

export interface RawRequest {
  body?: unknown;
  /** Sent as it is (with Content-Type application/json unless headers say otherwise). */
  rawBody?: string;
  token?: string;
  headers?: Record<string, string>;
}

export class MintmeshClient {
  constructor(readonly baseUrl: string) {}

  /** A documented call, typed by the document. */
  request<M extends Method, P extends PathsWith<M>>(
    method: M,
    path: P,
    ...[opts]: RequestArgs<Operation<P, M>>
  ): Promise<ApiResponse<Operation<P, M>>> {
    const o = (opts ?? {}) as {
      path?: Record<string, string | number>;
      query?: Record<string, string | number | boolean | undefined>;
      body?: unknown;
      token?: string;
      headers?: Record<string, string>;
    };
    let url = String(path).replace(/\{([^}]+)\}/g, (_m, name: string) => {
      const value = o.path?.[name];
      if (value === undefined) throw new Error(`Missing path parameter ${name} of ${path}`);
      return encodeURIComponent(String(value));
    });
    const query = Object.entries(o.query ?? {}).filter(([, v]) => v !== undefined);
    if (query.length)
      url += `?${new URLSearchParams(query.map(([k, v]): [string, string] => [k, String(v)]))}`;
    return this.send(method.toUpperCase(), url, o) as Promise<ApiResponse<Operation<P, M>>>;
  }

  /** Any request, untyped: for what the document does not describe (bad input on purpose). */
  async send(method: string, url: string, opts: RawRequest = {}): Promise<RawResponse> {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | undefined;
    if (opts.rawBody !== undefined) {
      body = opts.rawBody;
      headers["content-type"] ??= "application/json";
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["content-type"] = "application/json";
    }
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const res = await fetch(this.baseUrl + url, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed, text };
  }
}

/** The options argument: required when the operation has a path parameter or a required body. */
export type RequestArgs<O> = [PathParamsOf<O>] extends [never]
  ? BodyRequired<O> extends true
    ? [opts: RequestOptions<O>]
    : [opts?: RequestOptions<O>]
  : [opts: RequestOptions<O>];
