/** A small HTTP client for the gateway, as a script or a browser would use it. */

/** The API.md error shape. */
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
