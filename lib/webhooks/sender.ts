import http from "node:http";
import https from "node:https";
import { guardedLookup, type UrlPolicy } from "./url-policy";

/**
 * One delivery attempt over node:http(s): a POST of the body as JSON, answered with a
 * 2xx within `timeoutMs` (connect, headers and body together) or a failure. Redirects
 * are never followed (a 3xx is a failure: following one would send the event, and its
 * signature, where the owner did not register). The answer's body is read up to a few
 * KB and dropped. The socket resolves its host through guardedLookup, so the address it
 * connects to passes the same policy as the URL did at registration.
 */

export interface AttemptResult {
  ok: boolean;
  /** The HTTP status, when an answer came. */
  status?: number;
  /** Why it failed, short, with nothing of the request (no headers, no body). */
  error?: string;
  /** From a 429 or 503: the Retry-After header as given. */
  retryAfter?: string;
}

const MAX_ANSWER_BYTES = 4096;

export interface Sender {
  send(url: string, headers: Record<string, string>, body: string): Promise<AttemptResult>;
  close(): void;
}

export function createSender(policy: UrlPolicy, timeoutMs: number, userAgent: string): Sender {
  const lookup = guardedLookup(policy);
  // Keep-alive agents, bounded; each socket resolves through the guarded lookup.
  const agentOpts = { keepAlive: true, maxSockets: 256, maxFreeSockets: 32, lookup };
  const agents = { http: new http.Agent(agentOpts), https: new https.Agent(agentOpts) };

  return {
    send(url, headers, body) {
      return new Promise<AttemptResult>(resolve => {
        let done = false;
        const finish = (r: AttemptResult) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(r);
        };
        const target = new URL(url);
        const secure = target.protocol === "https:";
        const req = (secure ? https : http).request(
          target,
          {
            method: "POST",
            agent: secure ? agents.https : agents.http,
            lookup,
            headers: {
              ...headers,
              "content-type": "application/json",
              "content-length": String(Buffer.byteLength(body)),
              "user-agent": userAgent,
            },
          },
          res => {
            const status = res.statusCode ?? 0;
            let read = 0;
            res.on("data", (chunk: Buffer) => {
              read += chunk.length;
              if (read > MAX_ANSWER_BYTES) res.destroy(); // enough: the status is what counts
            });
            const settle = () => {
              const ok = status >= 200 && status < 300;
              const retryAfter =
                status === 429 || status === 503 ? header(res.headers["retry-after"]) : undefined;
              finish({
                ok,
                status,
                ...(ok ? {} : { error: `HTTP ${status}` }),
                ...(retryAfter !== undefined ? { retryAfter } : {}),
              });
            };
            res.on("end", settle);
            res.on("close", settle);
            res.on("error", settle);
          },
        );
        const timer = setTimeout(() => {
          finish({ ok: false, error: `no answer in ${timeoutMs} ms` });
          req.destroy();
        }, timeoutMs);
        req.on("error", (err: NodeJS.ErrnoException) =>
          finish({ ok: false, error: err.code ?? err.message }),
        );
        req.end(body);
      });
    },
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}

const header = (v: string | string[] | undefined): string | undefined =>
  Array.isArray(v) ? v[0] : v;
