import { describe, expect, it } from "vitest";
import { amountRule } from "../../../../lib/shared/amount";
import { buildOpenApi, parseAlias } from "../../../../lib/gateway/openapi/document";
import { objectSchema, ruleToSchema } from "../../../../lib/gateway/openapi/rules";
import { accountParam, pageParams } from "../../../../lib/shared/params";
import { textRule, urlRule } from "../../../../lib/shared/text-rules";

/** fastest-validator rules as lib/gateway/openapi/document.ts writes them into the document (JSON Schema 2020-12). */

describe("ruleToSchema", () => {
  it("maps strings with their bounds, patterns and formats", () => {
    expect(ruleToSchema({ type: "string", min: 2, max: 8, pattern: /^[A-Z]+$/ })).toEqual({
      type: "string",
      minLength: 2,
      maxLength: 8,
      pattern: "^[A-Z]+$",
    });
    expect(ruleToSchema({ type: "email", max: 254 })).toEqual({
      type: "string",
      format: "email",
      maxLength: 254,
    });
    expect(ruleToSchema({ type: "url" })).toEqual({ type: "string", format: "uri" });
    expect(ruleToSchema({ type: "string", empty: false })).toEqual({
      type: "string",
      minLength: 1,
    });
    expect(ruleToSchema(accountParam)).toEqual({ type: "string", minLength: 1, maxLength: 128 });
    // The text and URL rules mark themselves, so a walk of the document finds them.
    expect(ruleToSchema(textRule({ min: 1, max: 64 }))).toEqual({
      type: "string",
      minLength: 1,
      maxLength: 64,
      "x-text-rule": "text",
    });
    expect(ruleToSchema(urlRule({ nullable: true }))).toEqual({
      type: ["string", "null"],
      format: "uri",
      maxLength: 2048,
      "x-text-rule": "url",
    });
  });

  it("knows an amount, also after the rule went through JSON to another node", () => {
    const expected = {
      type: "string",
      minLength: 1,
      pattern: "^(0|[1-9][0-9]*)$",
      description: "decimal digits, base units, 0 … 2^256−1",
    };
    expect(ruleToSchema(amountRule())).toEqual(expected);
    expect(ruleToSchema(JSON.parse(JSON.stringify(amountRule())))).toEqual(expected);
  });

  it("drops a pattern JSON could not carry rather than writing a wrong one", () => {
    const remote: unknown = JSON.parse(JSON.stringify({ type: "string", pattern: /^a$/ }));
    expect(ruleToSchema(remote)).toEqual({ type: "string" });
  });

  it("maps numbers, integers, booleans, enums and defaults", () => {
    expect(ruleToSchema(pageParams.limit)).toEqual({
      type: "integer",
      minimum: 1,
      maximum: 100,
      default: 20,
    });
    expect(ruleToSchema({ type: "number", positive: true })).toEqual({
      type: "number",
      exclusiveMinimum: 0,
    });
    expect(ruleToSchema({ type: "boolean", convert: true })).toEqual({ type: "boolean" });
    expect(ruleToSchema({ type: "enum", values: ["a", "b"] })).toEqual({ enum: ["a", "b"] });
    expect(ruleToSchema({ type: "equal", value: 3 })).toEqual({ const: 3 });
  });

  it("maps shorthands, arrays, nested objects and alternatives", () => {
    expect(ruleToSchema("string|min:3|optional")).toEqual({ type: "string", minLength: 3 });
    expect(ruleToSchema("number[]")).toEqual({ type: "array", items: { type: "number" } });
    expect(
      ruleToSchema({
        type: "array",
        max: 5,
        unique: true,
        items: { type: "object", strict: true, props: { a: "string", b: "number|optional" } },
      }),
    ).toEqual({
      type: "array",
      maxItems: 5,
      uniqueItems: true,
      items: {
        type: "object",
        properties: { a: { type: "string" }, b: { type: "number" } },
        required: ["a"],
        additionalProperties: false,
      },
    });
    expect(ruleToSchema([{ type: "string" }, { type: "number" }])).toEqual({
      anyOf: [{ type: "string" }, { type: "number" }],
    });
    expect(ruleToSchema({ type: "object", nullable: true })).toEqual({
      type: ["object", "null"],
      properties: {},
    });
  });

  it("leaves out $$ keys and forbidden fields; optional and defaulted fields are not required", () => {
    expect(
      objectSchema({
        $$strict: "remove",
        a: "string",
        b: { type: "string", optional: true },
        c: { type: "number", default: 1 },
        d: { type: "forbidden" },
      }),
    ).toEqual({
      type: "object",
      properties: {
        a: { type: "string" },
        b: { type: "string" },
        c: { type: "number", default: 1 },
      },
      required: ["a"],
    });
  });
});

describe("buildOpenApi", () => {
  it("turns aliases into paths, params into parameters and bodies, and names shapes once", () => {
    const Thing = { title: "Thing", type: "object", properties: { id: { type: "string" } } };
    const doc = buildOpenApi({
      routes: [
        {
          name: "private",
          path: "/api",
          authentication: true,
          aliases: { "POST things/:id/parts": "things.add", "GET things/:id": "things.get" },
        },
      ],
      action: name =>
        name === "things.add"
          ? {
              params: { id: "string", n: "number", q: "string|optional" },
              openapi: { summary: "Add", status: 201, response: Thing },
            }
          : {
              params: { id: "string", full: "boolean|optional" },
              openapi: { summary: "Get", response: Thing },
            },
      statics: {},
    });
    const add = doc.paths["/api/things/{id}/parts"].post as Record<string, unknown>;
    expect(add.security).toEqual([{ bearer: [] }]);
    expect(add.parameters).toEqual([
      { name: "id", in: "path", required: true, schema: { type: "string" } },
      { $ref: "#/components/parameters/IdempotencyKey" },
    ]);
    expect(add.requestBody).toEqual({
      required: true,
      content: {
        "application/json": {
          schema: {
            type: "object",
            properties: { n: { type: "number" }, q: { type: "string" } },
            required: ["n"],
          },
        },
      },
    });
    const responses = add.responses as Record<string, { content?: unknown; $ref?: string }>;
    expect(responses[201].content).toEqual({
      "application/json": { schema: { $ref: "#/components/schemas/Thing" } },
    });
    // 403 on every route that takes a token: an API key may lack the route's scope.
    expect(Object.keys(responses)).toEqual([
      "201",
      "400",
      "401",
      "403",
      "404",
      "409",
      "413",
      "415",
      "429",
      "500",
      "503",
    ]);
    const get = doc.paths["/api/things/{id}"].get as Record<string, unknown>;
    expect(get.parameters).toContainEqual({
      name: "full",
      in: "query",
      required: false,
      schema: { type: "boolean" },
    });
    expect(doc.components.schemas.Thing).toEqual({
      type: "object",
      properties: { id: { type: "string" } },
    });
  });

  it("parses alias keys", () => {
    expect(parseAlias("GET tokens/:id/allowances/:owner/:spender")).toEqual({
      method: "get",
      path: "tokens/{id}/allowances/{owner}/{spender}",
      pathParams: ["id", "owner", "spender"],
    });
    expect(() => parseAlias("tokens")).toThrow(/without a method/);
  });
});
