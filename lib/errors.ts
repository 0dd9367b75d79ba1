import { Errors } from "moleculer";

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

export interface FieldError {
  field: string;
  message: string;
}

export const validationError = (field: string, message: string): ClientError =>
  new ClientError("Invalid request", 400, "VALIDATION_ERROR", [{ field, message }]);

export const unauthorized = (message = "Authentication required"): ClientError =>
  new ClientError(message, 401, "UNAUTHORIZED");

export const forbidden = (message = "Not allowed"): ClientError =>
  new ClientError(message, 403, "FORBIDDEN");

export const notFound = (what = "Resource"): ClientError =>
  new ClientError(`${what} not found`, 404, "NOT_FOUND");

export const conflict = (message: string, data?: unknown): ClientError =>
  new ClientError(message, 409, "CONFLICT", data);

/**
 * The work behind an idempotency key is still running: ask again later. Retryable, so the
 * gateway does not keep it as the key's answer and the broker's retry policy may ask again.
 */
export const inProgress = (message: string): ClientError => {
  const err = conflict(message);
  err.retryable = true;
  return err;
};

/** A business rule refused the request (INSUFFICIENT_FUNDS, SUPPLY_EXCEEDED, …). */
export const businessError = (type: string, message: string, data?: unknown): ClientError =>
  new ClientError(message, 422, type, data);

/**
 * Whether an error from another service's action says "no such thing": our NOT_FOUND
 * type only. Moleculer's ServiceNotFoundError also has code 404, but means the service is
 * unreachable, which must not look like absence.
 */
export const isNotFound = (err: unknown): boolean =>
  (err as { type?: unknown } | null)?.type === "NOT_FOUND";
