import { Errors } from "moleculer";
import { describe, expect, it } from "vitest";
import {
  businessError,
  conflict,
  forbidden,
  notFound,
  unauthorized,
} from "../../../lib/shared/errors";
import { toErrorResponse } from "../../../lib/gateway/http-errors";

const rid = "req-1";

describe("error responses (docs/api.md shape)", () => {
  it("turns validator errors into 400 naming each field, without echoing values", () => {
    const err = new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [
      { type: "stringMin", field: "password", message: "too short", actual: "secret1" },
    ]);
    const out = toErrorResponse(err, rid);
    expect(out.status).toBe(400);
    expect(out.body).toEqual({
      error: {
        type: "VALIDATION_ERROR",
        message: "Invalid request",
        requestId: rid,
        data: [{ field: "password", message: "too short" }],
      },
    });
    expect(JSON.stringify(out.body)).not.toContain("secret1");
  });

  it("passes the client errors of lib/errors through with their status and type", () => {
    expect(toErrorResponse(unauthorized("Invalid email or password"), rid)).toMatchObject({
      status: 401,
      body: { error: { type: "UNAUTHORIZED", message: "Invalid email or password" } },
    });
    expect(toErrorResponse(forbidden(), rid).status).toBe(403);
    expect(toErrorResponse(notFound("User"), rid).body.error).toMatchObject({
      type: "NOT_FOUND",
      message: "User not found",
    });
    expect(toErrorResponse(conflict("taken"), rid).status).toBe(409);
    expect(toErrorResponse(businessError("INSUFFICIENT_FUNDS", "no"), rid)).toMatchObject({
      status: 422,
      body: { error: { type: "INSUFFICIENT_FUNDS" } },
    });
  });

  it("maps body-parser failures: too large → 413, bad JSON → 400", () => {
    expect(toErrorResponse({ type: "entity.too.large", status: 413 }, rid).status).toBe(413);
    const bad = toErrorResponse(
      { type: "entity.parse.failed", status: 400, message: "Unexpected token" },
      rid,
    );
    expect(bad.status).toBe(400);
    expect(bad.body.error.type).toBe("VALIDATION_ERROR");
  });

  it("maps unavailability (no node, timeout, full queue) to 503", () => {
    for (const err of [
      new Errors.ServiceNotAvailableError({ action: "users.get" }),
      new Errors.RequestTimeoutError({ action: "users.get", nodeID: "n1" }),
      new Errors.QueueIsFullError({ action: "users.get", nodeID: "n1", size: 1, limit: 1 }),
    ]) {
      expect(toErrorResponse(err, rid).body.error.type).toBe("SERVICE_UNAVAILABLE");
    }
  });

  it("says 503 when no node serves the action, not 404", () => {
    const err = new Errors.ServiceNotFoundError({ action: "tokens.transfer" });
    expect(toErrorResponse(err, rid)).toMatchObject({
      status: 503,
      body: { error: { type: "SERVICE_UNAVAILABLE" } },
    });
  });

  it("hides everything about an unexpected error", () => {
    const out = toErrorResponse(new TypeError("cannot read x of undefined at /srv/db.ts:12"), rid);
    expect(out).toEqual({
      status: 500,
      internal: true,
      body: { error: { type: "INTERNAL_ERROR", message: "Internal server error", requestId: rid } },
    });
    const server = toErrorResponse(
      new Errors.MoleculerServerError("db down", 500, "DB", { host: "x" }),
      rid,
    );
    expect(server.body.error).toEqual({
      type: "INTERNAL_ERROR",
      message: "Internal server error",
      requestId: rid,
    });
  });

  it("does not trust a 4xx code without an error type (e.g. a library error)", () => {
    expect(toErrorResponse({ code: 400, message: "E11000 duplicate key" }, rid).status).toBe(500);
  });
});
