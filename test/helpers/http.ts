import { request as httpRequest } from "node:http";

/** A small HTTP client for the gateway, as a script or a browser would use it. */

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
  constructor(readonly baseUrl: string) {}

  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<HttpResult<T>> {
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
    const res = await fetch(this.baseUrl + path, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, body: parsed as T, text };
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
  const res = await client.post<{ user: { id: string }; token: string }>("/api/auth/register", {
    email,
    password: "correct horse battery",
    displayName: name,
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
