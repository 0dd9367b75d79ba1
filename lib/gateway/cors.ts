import { envBool, envInt, envList } from "../shared/env";

/**
 * CORS of the gateway (moleculer-web's `cors` setting), from env: off unless CORS_ORIGINS
 * names origins. moleculer-web answers a preflight (OPTIONS with
 * Access-Control-Request-Method) itself with 204 and the headers below, and refuses a
 * request whose Origin is not allowed with 403 ORIGIN_NOT_ALLOWED.
 *
 * Credentials (cookies) are off by default: the API authenticates with a bearer token,
 * which a page sends in Authorization without them. With CORS_CREDENTIALS=true a wildcard
 * origin is refused at start: any site could then make a user's browser call the API as
 * that user.
 */

/** moleculer-web's `cors` option, as far as we set it. */
export interface CorsSettings {
  origin: string | string[];
  methods: string[];
  allowedHeaders: string[];
  exposedHeaders: string[];
  credentials: boolean;
  maxAge: number;
}

export const CORS_METHODS = ["GET", "POST", "PATCH", "DELETE", "OPTIONS"];
export const CORS_ALLOWED_HEADERS = [
  "Authorization",
  "Content-Type",
  "Idempotency-Key",
  "X-Request-ID",
];
export const CORS_EXPOSED_HEADERS = [
  "Retry-After",
  "X-Request-ID",
  "Location",
  "Idempotent-Replayed",
  "X-Rate-Limit-Limit",
  "X-Rate-Limit-Remaining",
  "X-Rate-Limit-Reset",
];

/** An origin as a browser sends it ("https://app.example.com:8443"), or one with a `*.` subdomain wildcard. */
const ORIGIN = /^https?:\/\/(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$/;

export interface CorsEnv {
  origins: string[];
  credentials: boolean;
  maxAge: number;
}

export function corsEnv(): CorsEnv {
  return {
    origins: envList("CORS_ORIGINS"),
    credentials: envBool("CORS_CREDENTIALS", false),
    maxAge: envInt("CORS_MAX_AGE", 600),
  };
}

/** The `cors` setting for these env values; undefined (CORS off) when no origin is named. */
export function corsSettings(
  { origins, credentials, maxAge }: CorsEnv = corsEnv(),
): CorsSettings | undefined {
  if (origins.length === 0) return undefined;
  const any = origins.includes("*");
  if (any && credentials) {
    throw new Error(
      "CORS_ORIGINS=* is refused with CORS_CREDENTIALS=true: name the origins allowed",
    );
  }
  const bad = origins.filter(o => o !== "*" && !ORIGIN.test(o));
  if (bad.length) {
    throw new Error(
      `CORS_ORIGINS: not an origin (scheme://host[:port], no path): ${bad.join(", ")}`,
    );
  }
  return {
    origin: any ? "*" : origins,
    methods: CORS_METHODS,
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    credentials,
    maxAge,
  };
}
