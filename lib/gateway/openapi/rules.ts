import { amountRule } from "../../shared/amount";

/** A JSON Schema (2020-12, as OpenAPI 3.1 takes it), built as plain objects. */
export type JsonSchema = { [keyword: string]: unknown };

/**
 * fastest-validator rules (the actions' `params`) as JSON Schema 2020-12, the dialect of
 * OpenAPI 3.1: what lib/gateway/openapi/document.ts puts in the document for parameters and bodies.
 */

type Rule = Record<string, unknown>;

/** A rule in any of fastest-validator's forms, as an object ("string|min:3" → {...}). */
function normalize(raw: unknown): Rule {
  if (Array.isArray(raw)) return { type: "multi", rules: raw };
  if (typeof raw === "string") {
    const [type, ...opts] = raw.split("|");
    const rule: Rule = type.endsWith("[]") ? { type: "array", items: type.slice(0, -2) } : { type };
    for (const opt of opts) {
      const [k, v] = opt.split(":");
      rule[k] = v === undefined ? true : v === "true" ? true : v === "false" ? false : num(v);
    }
    return rule;
  }
  if (raw && typeof raw === "object") return raw as Rule;
  return { type: "any" };
}
const num = (v: string): string | number => (/^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v);

const AMOUNT_MESSAGE = amountRule().messages.string;

/** A RegExp's source; a string as it is; a RegExp that went through JSON ({}): none. */
function patternOf(p: unknown): string | undefined {
  if (p instanceof RegExp) return p.source;
  return typeof p === "string" ? p : undefined;
}

const isOptional = (rule: Rule): boolean =>
  rule.optional === true ||
  rule.default !== undefined ||
  (rule.type === "multi" &&
    Array.isArray(rule.rules) &&
    rule.rules.some(r => isOptional(normalize(r))));

/** A fastest-validator rule as JSON Schema 2020-12. */
export function ruleToSchema(raw: unknown): JsonSchema {
  const rule = normalize(raw);
  let s: JsonSchema;
  switch (rule.type) {
    case "string":
    case "email":
    case "url":
    case "uuid": {
      s = { type: "string" };
      if (rule.type === "email") s.format = "email";
      if (rule.type === "url") s.format = "uri";
      if (rule.type === "uuid") s.format = "uuid";
      if (typeof rule.length === "number") s.minLength = s.maxLength = rule.length;
      if (typeof rule.min === "number") s.minLength = rule.min;
      if (typeof rule.max === "number") s.maxLength = rule.max;
      if (rule.empty === false && s.minLength === undefined) s.minLength = 1;
      const pattern = patternOf(rule.pattern);
      if (pattern) s.pattern = pattern;
      if (Array.isArray(rule.enum)) s.enum = rule.enum;
      const messages = rule.messages as Record<string, unknown> | undefined;
      // textRule() / urlRule() (lib/shared/text-rules.ts): their checks are functions too.
      if (rule.textKind === "text" || rule.textKind === "url") s["x-text-rule"] = rule.textKind;
      if (rule.textKind === "url") s.format = "uri";
      if (messages?.string === AMOUNT_MESSAGE) {
        // amountRule() (lib/shared/amount.ts): its check is a function, which JSON cannot carry.
        s.pattern = "^(0|[1-9][0-9]*)$";
        s.description = "decimal digits, base units, 0 … 2^256−1";
      }
      break;
    }
    case "number": {
      s = { type: rule.integer === true ? "integer" : "number" };
      if (typeof rule.min === "number") s.minimum = rule.min;
      if (typeof rule.max === "number") s.maximum = rule.max;
      if (rule.positive === true) s.exclusiveMinimum = 0;
      if (rule.negative === true) s.exclusiveMaximum = 0;
      if (rule.equal !== undefined) s.const = rule.equal;
      break;
    }
    case "boolean":
      s = { type: "boolean" };
      break;
    case "enum":
      s = { enum: rule.values };
      break;
    case "equal":
      s = { const: rule.value };
      break;
    case "date":
      s = { type: "string", format: "date-time" };
      break;
    case "object":
      s = objectSchema((rule.props ?? rule.properties) as Record<string, unknown> | undefined);
      if (rule.strict === true) s.additionalProperties = false;
      break;
    case "array": {
      s = { type: "array" };
      if (rule.items !== undefined) s.items = ruleToSchema(rule.items);
      if (typeof rule.length === "number") s.minItems = s.maxItems = rule.length;
      if (typeof rule.min === "number") s.minItems = rule.min;
      if (typeof rule.max === "number") s.maxItems = rule.max;
      if (rule.empty === false && s.minItems === undefined) s.minItems = 1;
      if (rule.unique === true) s.uniqueItems = true;
      break;
    }
    case "multi":
      s = { anyOf: (rule.rules as unknown[]).map(r => ruleToSchema(r)) };
      break;
    default:
      // "any", "custom" and what has no JSON Schema counterpart: anything.
      s = {};
  }
  if (rule.nullable === true) {
    s =
      typeof s.type === "string"
        ? { ...s, type: [s.type, "null"] }
        : { anyOf: [s, { type: "null" }] };
  }
  if (rule.default !== undefined && typeof rule.default !== "function") s.default = rule.default;
  if (typeof rule.description === "string") s.description = rule.description;
  return s;
}

/** The props of an object rule (or of an action's params) as an object schema. */
export function objectSchema(props: Record<string, unknown> = {}, skip: string[] = []): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  const required: string[] = [];
  for (const [name, raw] of Object.entries(props)) {
    if (name.startsWith("$$") || skip.includes(name)) continue;
    const rule = normalize(raw);
    if (rule.type === "forbidden") continue;
    properties[name] = ruleToSchema(rule);
    if (!isOptional(rule)) required.push(name);
  }
  return { type: "object", properties, ...(required.length ? { required } : {}) };
}
