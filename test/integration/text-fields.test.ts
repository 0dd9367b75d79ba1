import { beforeAll, describe, expect, it } from "vitest";
import type { OpenApiDocument } from "../../lib/gateway/openapi/document";
import { OpenApiMiddleware } from "../../middlewares/openapi.middleware";
import { ALL_SERVICES, usePlatform, useUsers } from "../helpers/platform";
import type { ErrorBody } from "../helpers/http";

/**
 * Every text a person is shown and every URL a page links to, on every route, keeps the
 * rules of lib/shared/text-rules.ts. The walk starts from the OpenAPI document (built from the
 * actions' params): the rules mark their fields with `x-text-rule`, so a field named like
 * text (name, bio, description …) or like a URL (image, website …) without the mark is a
 * field that skips them; and each marked field gets a bidi override, a NUL and (URLs)
 * markup, each answered 400 naming that field.
 */

type Schema = Record<string, unknown>;

/** Names of fields people read, and of fields that hold a link. */
const TEXT_NAMES = new Set([
  "name",
  "symbol",
  "displayName",
  "bio",
  "description",
  "title",
  "label",
  "trait_type",
  "value",
]);
const URL_NAMES = new Set(["image", "imageUrl", "avatarUrl", "website", "url", "externalUrl"]);

const BAD_TEXT = ["Trusted\u202Egnp.exe", "iso\u2066late\u2069", "nul\u0000here", "two\nlines"];
const BAD_URLS = [
  'https://evil.example/"><img src=x onerror=alert(1)>',
  "https://evil.example/\u202Egnp.exe",
  "https://evil.example/\u0000",
  "javascript:alert(1)",
];

interface Field {
  /** "POST /api/collections/{id}/nfts" */
  route: string;
  method: string;
  path: string;
  /** Where in the body: ["metadata", "attributes", 0, "value"]. */
  at: Array<string | number>;
  kind: unknown;
}

const label = (at: Array<string | number>): string =>
  at.reduce<string>((s, k) => (typeof k === "number" ? `${s}[${k}]` : s ? `${s}.${k}` : k), "");

/** An operation's JSON body schema, if it takes one. */
const bodySchema = (op: Record<string, unknown>): Schema | undefined =>
  (op.requestBody as { content?: Record<string, { schema: Schema }> } | undefined)?.content?.[
    "application/json"
  ]?.schema;

const typeOf = (s: Schema): unknown =>
  Array.isArray(s.type) ? (s.type as unknown[]).find(t => t !== "null") : s.type;

describe("text and URL fields on every route", () => {
  const p = usePlatform(ALL_SERVICES, {
    env: { RATE_LIMIT_MAX: "0" },
    middlewares: [OpenApiMiddleware],
  });
  const [ann] = useUsers(p, ["ann"]);
  let doc: OpenApiDocument;
  const fields: Field[] = [];

  const resolve = (s: Schema): Schema => {
    const ref = s.$ref;
    if (typeof ref !== "string") return s;
    const name = ref.split("/").pop() ?? "";
    return resolve(doc.components.schemas[name] as Schema);
  };

  /** The string fields under `schema`, each alternative of an anyOf walked. */
  function walk(
    schema: Schema,
    at: Array<string | number>,
    found: (at: Array<string | number>, s: Schema) => void,
  ) {
    const s = resolve(schema);
    for (const alt of (s.anyOf ?? s.oneOf ?? []) as Schema[]) walk(alt, at, found);
    const type = typeOf(s);
    if (type === "object") {
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, Schema>))
        walk(v, [...at, k], found);
    } else if (type === "array" && s.items) walk(s.items as Schema, [...at, 0], found);
    else if (type === "string") found(at, s);
  }

  /** A value the schema takes (the field under test aside, the body should pass). */
  function sample(schema: Schema): unknown {
    const s = resolve(schema);
    const alts = (s.anyOf ?? s.oneOf) as Schema[] | undefined;
    if (alts) return sample(alts.find(a => a.type !== "null") ?? alts[0]);
    if (s.const !== undefined) return s.const;
    if (Array.isArray(s.enum)) return s.enum[0];
    switch (typeOf(s)) {
      case "object": {
        const props = (s.properties ?? {}) as Record<string, Schema>;
        const req = (s.required ?? []) as string[];
        return Object.fromEntries(req.map(k => [k, sample(props[k])]));
      }
      case "array":
        return typeof s.minItems === "number" && s.minItems > 0 ? [sample(s.items as Schema)] : [];
      case "integer":
      case "number":
        return typeof s.minimum === "number" ? Math.max(s.minimum, 1) : 1;
      case "boolean":
        return true;
      case "string": {
        if (s["x-text-rule"] === "url") return "https://example.com/a.png";
        if (s.format === "email") return "someone@example.com";
        if (s.pattern === "^(0|[1-9][0-9]*)$") return "1";
        if (s.pattern === "^[A-Z0-9]{2,11}$") return "ABC";
        return "x".repeat(Math.max(Number(s.minLength ?? 1), 2));
      }
      default:
        return null;
    }
  }

  /** A body of `schema` with `value` at `at`, the containers on the way sampled. */
  function bodyWith(schema: Schema, at: Array<string | number>, value: unknown): unknown {
    if (at.length === 0) return value;
    const s = resolve(schema);
    const [head, ...rest] = at;
    if (typeof head === "number") return [bodyWith(s.items as Schema, rest, value)];
    const objectSchema =
      typeOf(s) === "object"
        ? s
        : (((s.anyOf ?? []) as Schema[]).map(resolve).find(a => typeOf(a) === "object") ?? s);
    const props = (objectSchema.properties ?? {}) as Record<string, Schema>;
    const base = sample(objectSchema) as Record<string, unknown>;
    return { ...base, [head]: bodyWith(props[head], rest, value) };
  }

  beforeAll(async () => {
    const res = await p.client.api.request("get", "/api/openapi.json");
    expect(res.status).toBe(200);
    doc = res.body as unknown as OpenApiDocument;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const schema = bodySchema(op);
        if (!schema) continue;
        walk(schema, [], (at, s) => {
          fields.push({
            route: `${method.toUpperCase()} ${path}`,
            method,
            path,
            at,
            kind: s["x-text-rule"],
          });
        });
      }
    }
  });

  /** What a field should be by its name: "text", "url" or undefined (neither). */
  const kindByName = (f: Field): string | undefined => {
    const name = [...f.at].reverse().find(k => typeof k === "string") ?? "";
    return TEXT_NAMES.has(name) ? "text" : URL_NAMES.has(name) ? "url" : undefined;
  };

  it("marks every field named like text or a URL with the text or URL rule", () => {
    const skipping = fields
      .filter(f => kindByName(f) !== undefined && f.kind !== kindByName(f))
      .map(f => `${f.route} ${label(f.at)}`);
    expect(skipping, "these fields skip lib/shared/text-rules.ts").toEqual([]);
    // The walk found the fields the brief names (it walks what the document has).
    const marked = fields.filter(f => f.kind).map(f => `${f.route} ${label(f.at)}`);
    expect(marked).toEqual(
      expect.arrayContaining([
        "POST /api/auth/register displayName",
        "PATCH /api/users/me displayName",
        "PATCH /api/users/me bio",
        "PATCH /api/users/me avatarUrl",
        "POST /api/tokens name",
        "POST /api/tokens symbol",
        "POST /api/tokens metadata.description",
        "POST /api/tokens metadata.imageUrl",
        "PATCH /api/tokens/{id}/metadata website",
        "POST /api/launches token.name",
        "POST /api/launches token.metadata.imageUrl",
        "POST /api/collections name",
        "POST /api/collections symbol",
        "POST /api/collections/{id}/nfts metadata.name",
        "POST /api/collections/{id}/nfts metadata.description",
        "POST /api/collections/{id}/nfts metadata.image",
        "POST /api/collections/{id}/nfts metadata.attributes[0].trait_type",
        "POST /api/collections/{id}/nfts metadata.attributes[0].value",
      ]),
    );
  });

  it("answers a bidi override, a NUL or markup in a URL with 400 naming the field, on every marked field", async () => {
    const refused: string[] = [];
    const passed: string[] = [];
    // The marked fields, and those whose name says they should be (a skipped rule shows here too).
    for (const f of fields.filter(x => x.kind ?? kindByName(x))) {
      const schema = bodySchema(doc.paths[f.path][f.method]) ?? {};
      const url = f.path.replace(/\{[^}]+\}/g, "x1");
      for (const bad of (f.kind ?? kindByName(f)) === "url" ? BAD_URLS : BAD_TEXT) {
        const res = await p.client.request<ErrorBody>(f.method.toUpperCase(), url, {
          body: bodyWith(schema, f.at, bad),
          token: ann.token,
        });
        const fieldsNamed = res.body.error?.data?.map(e => e.field) ?? [];
        const what = `${f.route} ${label(f.at)} ${JSON.stringify(bad)}`;
        // The rest of the body is valid: the one field is what the answer names.
        if (res.status === 400 && [...new Set(fieldsNamed)].join() === label(f.at))
          refused.push(what);
        else passed.push(`${what}: ${res.status} ${JSON.stringify(fieldsNamed)}`);
      }
    }
    expect(passed).toEqual([]);
    expect(refused.length).toBeGreaterThanOrEqual(18 * 4);
  });
});
