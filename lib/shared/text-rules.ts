/**
 * fastest-validator rules for text that other people are shown (names, bios, symbols,
 * descriptions) and for URLs a page will link to. Like amountRule() (lib/shared/amount.ts): every
 * action that takes such a field uses these, so a bad value is a 400 naming the field.
 *
 * Refused in text: control characters (C0, DEL, C1: newlines included) and the bidi
 * overrides and isolates (U+202A–U+202E, U+2066–U+2069), which make a name read as
 * something else ("Trusted‮gnp.exe"). URLs: http or https only, and no quote, angle
 * bracket, backtick, backslash or space, which a careless template turns into markup.
 * Markup in text (`<b>`) is text: pages escape what they show; only what no escaping
 * makes safe (bidi tricks, NUL, line breaks in a one-line field) is refused.
 *
 * Each rule carries `textKind`, which fastest-validator ignores and lib/gateway/openapi/rules.ts
 * turns into `x-text-rule` in the OpenAPI document: a test walks the document and finds
 * any human-readable or URL field that skips these rules.
 */

// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const UNSAFE_TEXT = /[\u0000-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069]/;
const URL_UNSAFE = /["'<>`\\\s]/;
export const MAX_URL_LENGTH = 2048;

/** Why `text` may not be shown as it is, or null when it may. */
export function textProblem(text: string): string | null {
  return UNSAFE_TEXT.test(text)
    ? "must not contain control characters or bidirectional overrides"
    : null;
}

/** Why `text` is not a URL we link to, or null when it is one. */
export function urlProblem(text: string): string | null {
  if (URL_UNSAFE.test(text) || UNSAFE_TEXT.test(text)) {
    return "must be an http(s) URL without quotes, angle brackets or spaces";
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "must be an http(s) URL";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "must be an http(s) URL";
  return null;
}

type CustomErrors = Array<{ type: string; actual: unknown; message: string }>;

/** A `custom` check running `problem` on strings (fastest-validator runs it on absent values too). */
function check(type: string, problem: (text: string) => string | null) {
  return (value: unknown, errors: CustomErrors, _schema: unknown, field: string): unknown => {
    if (typeof value !== "string") return value; // absent, null or not a string: the rule's own checks
    const why = problem(value);
    if (why) errors.push({ type, actual: value, message: `The '${field}' field ${why}.` });
    return value;
  };
}

export interface TextRuleOptions {
  max: number;
  min?: number;
  trim?: boolean;
  optional?: boolean;
  pattern?: RegExp;
}

/** A string shown to others: `min`–`max` characters, no control or bidi override characters. */
export function textRule(opts: TextRuleOptions) {
  return {
    type: "string" as const,
    min: opts.min ?? 0,
    max: opts.max,
    trim: opts.trim ?? false,
    optional: opts.optional ?? false,
    ...(opts.pattern ? { pattern: opts.pattern } : {}),
    // A value the pattern refuses has its error already: one entry per field.
    custom: check("text", t => (opts.pattern && !opts.pattern.test(t) ? null : textProblem(t))),
    textKind: "text" as const,
  };
}

/** An http(s) URL of at most 2048 characters; `nullable` takes null as "none". */
export function urlRule(opts: { optional?: boolean; nullable?: boolean } = {}) {
  return {
    type: "string" as const,
    max: MAX_URL_LENGTH,
    optional: opts.optional ?? false,
    nullable: opts.nullable ?? false,
    custom: check("url", urlProblem),
    textKind: "url" as const,
  };
}
