import { createServer, request as httpRequest, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { MintmeshClient } from "../../client";

/**
 * A small HTTP client for the gateway, as a script or a browser would use it.
 *
 * `client.api` is the typed client of client/index.ts: paths, parameters, bodies and
 * answers come from the committed OpenAPI document (client/openapi.json, typed as client/schema.d.ts), so a test that
 * uses it stops compiling when the document changes under it, and the document cannot
 * change unnoticed (test/integration/openapi.test.ts compares it with what the gateway
 * serves). The loose methods (get, post, patch, delete: any path, any body, the answer's
 * type given by the caller) go through the same client's `send`; they stay for the tests
 * that send what the document forbids on purpose (a bad amount, a missing field, a
 * foreign media type). New tests and helpers use `api`; the older ones move over as they
 * are touched.
 */

/** The docs/api.md error shape. */
export interface ErrorBody {
  error: {
    type: string;
    message: string;
    requestId: string;
    data?: Array<{ field: string; message: string }>;
  };
}

export interface HttpResult<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export interface RequestOptions {
  body?: unknown;
  rawBody?: string;
  token?: string;
  headers?: Record<string, string>;
}

export class ApiClient {
  /** The typed client (client/index.ts). */
  readonly api: MintmeshClient;

  constructor(readonly baseUrl: string) {
    this.api = new MintmeshClient(baseUrl);
  }

  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<HttpResult<T>> {
    const res = await this.api.send(method, path, opts);
    return { ...res, body: res.body as T };
  }

  get<T = Record<string, unknown>>(path: string, opts?: RequestOptions) {
    return this.request<T>("GET", path, opts);
  }
  post<T = Record<string, unknown>>(path: string, body?: unknown, opts: RequestOptions = {}) {
    return this.request<T>("POST", path, { ...opts, body });
  }
  patch<T = Record<string, unknown>>(path: string, body?: unknown, opts: RequestOptions = {}) {
    return this.request<T>("PATCH", path, { ...opts, body });
  }
  delete<T = Record<string, unknown>>(path: string, opts?: RequestOptions) {
    return this.request<T>("DELETE", path, opts);
  }
}

export interface Registered {
  id: string;
  email: string;
  token: string;
}

let seq = 0;

/** Registers a fresh user and returns its id and token. */
export async function registerUser(client: ApiClient, name = "user"): Promise<Registered> {
  const email = `${name}-${process.pid}-${Date.now()}-${seq++}@example.com`;
  const res = await client.api.request("post", "/api/auth/register", {
    body: { email, password: "correct horse battery", displayName: name },
  });
  if (res.status !== 201) throw new Error(`register failed: ${res.status} ${res.text}`);
  return { id: res.body.user.id, email, token: res.body.token };
}

export interface RawRequest {
  method: string;
  path: string;
  /** Sent as they are: nothing is added but Host and, with a body, Content-Length. */
  headers?: Record<string, string>;
  body?: string;
}

/** A request with exactly the headers given (fetch adds a Content-Type to a text body). */
export function rawRequest(baseUrl: string, req: RawRequest): Promise<HttpResult> {
  const url = new URL(req.path, baseUrl);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...req.headers };
    if (req.body !== undefined) headers["content-length"] = Buffer.byteLength(req.body);
    const out = httpRequest(url, { method: req.method, headers }, res => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let body: Record<string, unknown> = {};
        try {
          body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        } catch {
          body = {};
        }
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (typeof v === "string") h.set(k, v);
        }
        resolve({ status: res.statusCode ?? 0, headers: h, body, text });
      });
      res.on("error", reject);
    });
    out.on("error", reject);
    out.end(req.body);
  });
}

/** What a stand-in receiver (a trace collector, a webhook endpoint) was sent. */
export interface Received {
  url: string;
  type: string;
  /** The body as UTF-8 text, and as the bytes sent (Thrift, say). */
  body: string;
  raw: Buffer;
}

/**
 * A stand-in HTTP receiver on a free loopback port: `onPost` sees each request's whole
 * body and answers it. Resolves to the server and its base URL.
 */
export async function startReceiver(
  onPost: (got: Received, res: ServerResponse) => void,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const type = req.headers["content-type"] ?? "";
      onPost({ url: req.url ?? "", type, body: raw.toString("utf8"), raw }, res);
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}` };
}
