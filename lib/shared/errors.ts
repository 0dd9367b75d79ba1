import { Errors } from "moleculer";

/**
 * Every error type a client may see and its HTTP status (docs/api.md "Errors"), in one
 * place: the factories below, the gateway's error shaping (lib/gateway/http-errors.ts) and a
 * refusal a saga recorded all take the status from here. A type not in the table is a
 * business rule's refusal: 422.
 */
export const ERROR_STATUS = {
  VALIDATION_ERROR: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INSUFFICIENT_FUNDS: 422,
  INSUFFICIENT_ALLOWANCE: 422,
  SUPPLY_EXCEEDED: 422,
  BID_TOO_LOW: 422,
  RATE_LIMITED: 429,
  INTERNAL_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
} as const;

export type ErrorType = keyof typeof ERROR_STATUS;

/** The status of an error type: the table's, else 422 (a business rule refused it). */
export const statusOf = (type: string): number =>
  (ERROR_STATUS as Record<string, number>)[type] ?? 422;

/**
 * Errors a client may see. Each carries the HTTP status as `code` and the docs/api.md
 * `type`; the gateway passes them through as they are. Anything else is a 500.
 */
export class ClientError extends Errors.MoleculerClientError {
  constructor(message: string, code: number, type: string, data?: unknown) {
    super(message, code, type, data);
    this.name = "ClientError";
  }
}

/**
 * A failure of the server's own (a 5xx such as "taken over by another node"): Moleculer's
 * error class, so the broker and the gateway treat it as theirs, without engines importing
 * moleculer themselves.
 */
export class ServerError extends Errors.MoleculerError {}

/** An error of `type`, its status from the table. */
export const clientError = (type: string, message: string, data?: unknown): ClientError =>
  new ClientError(message, statusOf(type), type, data);

export interface FieldError {
  field: string;
  message: string;
}

export const validationError = (field: string, message: string): ClientError =>
  clientError("VALIDATION_ERROR", "Invalid request", [{ field, message }]);

export const unauthorized = (message = "Authentication required"): ClientError =>
  clientError("UNAUTHORIZED", message);

export const forbidden = (message = "Not allowed"): ClientError =>
  clientError("FORBIDDEN", message);

export const notFound = (what = "Resource"): ClientError =>
  clientError("NOT_FOUND", `${what} not found`);

export const conflict = (message: string, data?: unknown): ClientError =>
  clientError("CONFLICT", message, data);

/**
 * The work behind an idempotency key is still running: ask again later. Retryable, so the
 * gateway does not keep it as the key's answer and the broker's retry policy may ask again.
 */
export const inProgress = (message: string): ClientError => {
  const err = conflict(message);
  err.retryable = true;
  return err;
};

/** A business rule refused the request (INSUFFICIENT_FUNDS, SUPPLY_EXCEEDED, …): 422. */
export const businessError = (type: string, message: string, data?: unknown): ClientError =>
  new ClientError(message, 422, type, data);

/**
 * Whether an error from another service's action says "no such thing": our NOT_FOUND
 * type only. Moleculer's ServiceNotFoundError also has code 404, but means the service is
 * unreachable, which must not look like absence.
 */
export const isNotFound = (err: unknown): boolean =>
  (err as { type?: unknown } | null)?.type === "NOT_FOUND";
