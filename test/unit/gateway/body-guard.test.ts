import { describe, expect, it } from "vitest";
import {
  MAX_NESTING,
  acceptedRequestId,
  guardRequest,
  isJsonMediaType,
  shapeProblem,
  type GuardedRequest,
} from "../../../lib/gateway/body-guard";

const post = (body: unknown, headers: Record<string, string> = {}, query = {}): GuardedRequest => ({
  method: "POST",
  headers: { "content-type": "application/json", "content-length": "10", ...headers },
  body,
  query,
});

const refusal = (req: GuardedRequest) => {
  try {
    guardRequest(req);
    return null;
  } catch (err) {
    const e = err as { code: number; type: string; data?: Array<{ field: string }> };
    return { code: e.code, type: e.type, fields: (e.data ?? []).map(d => d.field) };
  }
};

describe("lib/body-guard", () => {
  it("finds reserved keys at any depth, own keys as JSON.parse makes them", () => {
    expect(shapeProblem(JSON.parse('{"__proto__": {"a": 1}}'))?.field).toBe("__proto__");
    expect(shapeProblem({ a: [{ b: { constructor: 1 } }] })?.field).toBe("a.0.b.constructor");
    expect(shapeProblem({ prototype: 1 }, "query")?.field).toBe("query.prototype");
    expect(shapeProblem({ a: { b: [1, "x", null] } })).toBeNull();
  });

  it("allows 32 levels of nesting and refuses 33, without recursion on 200,000", () => {
    const nest = (depth: number): unknown => {
      let v: unknown = 1;
      for (let i = 0; i < depth; i++) v = [v];
      return v;
    };
    expect(shapeProblem(nest(MAX_NESTING))).toBeNull();
    expect(shapeProblem(nest(MAX_NESTING + 1))?.message).toMatch(/deeper than 32/);
    expect(shapeProblem(nest(200_000))?.message).toMatch(/deeper than 32/);
  });

  it("takes a JSON object on a write route and nothing from its query", () => {
    const req = post({ to: "b", amount: "1" });
    expect(refusal(req)).toBeNull();
    expect(req.query).toEqual({});
    expect(refusal(post({ amount: "1" }, {}, { amount: "500", x: "1" }))).toEqual({
      code: 400,
      type: "VALIDATION_ERROR",
      fields: ["query.amount", "query.x"],
    });
    for (const body of [[], "text", 42, null]) {
      expect(refusal(post(body))?.fields).toEqual(["body"]);
    }
  });

  it("answers 415 to a body that is not application/json, and takes no body as {}", () => {
    expect(refusal(post({}, { "content-type": "text/plain" }))?.code).toBe(415);
    const noType = post({});
    delete noType.headers["content-type"];
    expect(refusal(noType)?.type).toBe("UNSUPPORTED_MEDIA_TYPE");
    const empty: GuardedRequest = { method: "PATCH", headers: {}, body: {} };
    expect(refusal(empty)).toBeNull();
    expect(empty.body).toEqual({});
    expect(isJsonMediaType("Application/JSON; charset=utf-8")).toBe(true);
    expect(isJsonMediaType("application/json-patch+json")).toBe(false);
  });

  it("drops the body of a read, and still checks its query", () => {
    const get: GuardedRequest = { method: "GET", headers: {}, body: { a: 1 }, query: { q: "x" } };
    expect(refusal(get)).toBeNull();
    expect(get.body).toEqual({});
    expect(get.query).toEqual({ q: "x" });
    expect(refusal({ method: "GET", headers: {}, query: { prototype: "1" } })?.fields).toEqual([
      "query.prototype",
    ]);
  });

  it("keeps an X-Request-ID of at most 128 plain characters, and nothing else", () => {
    expect(acceptedRequestId("abc.DEF_1:2-3")).toBe("abc.DEF_1:2-3");
    expect(acceptedRequestId("x".repeat(128))).toHaveLength(128);
    for (const bad of ["x".repeat(129), "", "a b", "a\nb", "ü", undefined, ["a", "b"]]) {
      expect(acceptedRequestId(bad)).toBeUndefined();
    }
  });
});
