/**
 * Fault-injection rules (the FAULTS env), parsed without a broker so they can be unit-tested.
 *
 * Format, like a service mesh's fault injection but in one env line:
 *
 *   FAULTS="<rule>;<rule>;…"
 *   rule   = <actions>:<fault>[:pct=<0-100>][:retryable=<true|false>]
 *   fault  = delay=<n>ms | delay=<n>s | abort=<HTTP status 400-599>
 *   actions: a full action name ("catalog.list", "v2.catalog.list"), or a glob where `*`
 *            stands for any run of characters ("catalog.*", "*.get", "*"); `@` and an
 *            event name (or glob) names events instead: an abort drops the event on the
 *            nodes that would handle it (a lost broadcast), a delay holds it back
 *
 * Examples:
 *   FAULTS="catalog.list:delay=200ms:pct=50"          half of catalog.list calls wait 200 ms
 *   FAULTS="users.get:abort=503"                       every users.get fails with a retryable 503
 *   FAULTS="tokens.*:abort=500:pct=10;catalog.get:delay=1s:pct=5"
 *
 * `pct` defaults to 100. An abort is retryable by default only for the transient statuses
 * 502/503/504 (what a proxy answers when its upstream is gone); `retryable=` overrides it.
 * Every rule that matches an action rolls its own dice on each call: delays of matching rules
 * add up, and the first abort that hits fails the call after those delays.
 */

export interface AbortFault {
  /** HTTP-like status carried as the error's `code`. */
  code: number;
  retryable: boolean;
}

export interface FaultRule {
  /** The pattern as written, for logs. */
  actions: string;
  match: RegExp;
  /** Share of calls hit, 0–100. */
  pct: number;
  delayMs?: number;
  abort?: AbortFault;
}

export interface FaultDecision {
  delayMs: number;
  abort?: AbortFault;
}

export class FaultSpecError extends Error {
  constructor(rule: string, reason: string) {
    super(`Invalid FAULTS rule "${rule}": ${reason}`);
    this.name = "FaultSpecError";
  }
}

const TRANSIENT = new Set([502, 503, 504]);
const ACTIONS_RE = /^@?[A-Za-z0-9_$.*-]+$/;

function globToRegExp(glob: string): RegExp {
  const body = glob
    .split("*")
    .map(part => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${body}$`);
}

function parseDuration(rule: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(text);
  if (!m) throw new FaultSpecError(rule, `delay "${text}" must look like 200ms or 1.5s`);
  const ms = Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  if (ms > 600_000) throw new FaultSpecError(rule, "delay is longer than 10 minutes");
  return Math.round(ms);
}

function parseRule(rule: string): FaultRule {
  const [actions, ...opts] = rule.split(":").map(s => s.trim());
  if (!actions || !ACTIONS_RE.test(actions)) {
    throw new FaultSpecError(rule, "it must start with an action name or glob, e.g. catalog.list");
  }
  const out: FaultRule = { actions, match: globToRegExp(actions), pct: 100 };
  let retryable: boolean | undefined;
  for (const opt of opts) {
    const eq = opt.indexOf("=");
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? "" : opt.slice(eq + 1);
    switch (key) {
      case "delay":
        if (out.delayMs !== undefined) throw new FaultSpecError(rule, "delay given twice");
        out.delayMs = parseDuration(rule, value);
        break;
      case "abort": {
        if (out.abort) throw new FaultSpecError(rule, "abort given twice");
        const code = Number(value);
        if (!/^\d{3}$/.test(value) || code < 400 || code > 599) {
          throw new FaultSpecError(rule, `abort "${value}" must be an HTTP status 400-599`);
        }
        out.abort = { code, retryable: TRANSIENT.has(code) };
        break;
      }
      case "pct": {
        const pct = Number(value);
        if (value === "" || !Number.isFinite(pct) || pct < 0 || pct > 100) {
          throw new FaultSpecError(rule, `pct "${value}" must be a number from 0 to 100`);
        }
        out.pct = pct;
        break;
      }
      case "retryable":
        if (value !== "true" && value !== "false") {
          throw new FaultSpecError(rule, `retryable "${value}" must be true or false`);
        }
        retryable = value === "true";
        break;
      default:
        throw new FaultSpecError(
          rule,
          `unknown option "${key}" (use delay, abort, pct, retryable)`,
        );
    }
  }
  if (out.delayMs === undefined && !out.abort) {
    throw new FaultSpecError(rule, "it needs delay=<duration> or abort=<status>");
  }
  if (out.delayMs !== undefined && out.abort) {
    // One fault per rule keeps "pct" unambiguous; write two rules to get both.
    throw new FaultSpecError(rule, "use one rule for the delay and another for the abort");
  }
  if (retryable !== undefined) {
    if (!out.abort) throw new FaultSpecError(rule, "retryable applies to abort only");
    out.abort.retryable = retryable;
  }
  return out;
}

/** Parses a FAULTS value; empty or unset means no faults. Throws FaultSpecError naming the bad rule. */
export function parseFaults(spec: string | undefined): FaultRule[] {
  if (!spec) return [];
  return spec
    .split(";")
    .map(r => r.trim())
    .filter(Boolean)
    .map(parseRule);
}

/** The rules of an action, or with "@<event name>" of an event: `@` rules never match actions. */
export function rulesFor(rules: readonly FaultRule[], actionName: string): FaultRule[] {
  const event = actionName.startsWith("@");
  return rules.filter(r => r.actions.startsWith("@") === event && r.match.test(actionName));
}

/** What to do to one call of `actionName`; `rng` returns [0, 1) like Math.random. */
export function decideFault(
  rules: readonly FaultRule[],
  actionName: string,
  rng: () => number = Math.random,
): FaultDecision {
  const decision: FaultDecision = { delayMs: 0 };
  for (const rule of rulesFor(rules, actionName)) {
    if (rng() * 100 >= rule.pct) continue;
    if (rule.delayMs !== undefined) decision.delayMs += rule.delayMs;
    if (rule.abort && !decision.abort) decision.abort = rule.abort;
  }
  return decision;
}

/** One line per rule, for the startup log. */
export function describeFaults(rules: readonly FaultRule[]): string {
  return rules
    .map(r => {
      const fault =
        r.delayMs !== undefined
          ? `delay ${r.delayMs} ms`
          : `abort ${r.abort?.code}${r.abort?.retryable ? " (retryable)" : ""}`;
      return `${r.actions}: ${fault} on ${r.pct} % of calls`;
    })
    .join("; ");
}
