import fs from "node:fs";
import path from "node:path";
import type { ServiceSchema } from "moleculer";
import { describe, expect, it } from "vitest";

/**
 * docs/architecture.md rule 6 names every action other services may call and the gateway
 * never routes: those with `visibility: "public"`. The list is compared with the service
 * schemas themselves (services/*.service.ts, imported without a broker; a mixin's actions
 * count for the service that mixes it in, as Moleculer merges them).
 */

const ROOT = path.resolve(__dirname, "../../..");
const SERVICES = path.join(ROOT, "services");

type Schema = Partial<ServiceSchema> & { mixins?: Schema[] };

/** `action name -> visibility` of a schema and its mixins (the schema's own win). */
function visibilities(schema: Schema): Map<string, string | undefined> {
  const out = new Map<string, string | undefined>();
  for (const mixin of schema.mixins ?? [])
    for (const [name, v] of visibilities(mixin)) out.set(name, v);
  for (const [name, def] of Object.entries(schema.actions ?? {})) {
    if (def === false) out.delete(name);
    else if (def && typeof def === "object")
      out.set(name, (def as { visibility?: string }).visibility ?? out.get(name));
    else out.set(name, undefined);
  }
  return out;
}

async function publicActions(): Promise<string[]> {
  const names: string[] = [];
  const files = fs.readdirSync(SERVICES).filter(f => f.endsWith(".service.ts"));
  for (const file of files.sort()) {
    const mod = (await import(path.join(SERVICES, file))) as { default: Schema };
    const schema = mod.default;
    const prefix = schema.version !== undefined ? `v${schema.version}.` : "";
    for (const [action, v] of visibilities(schema))
      if (v === "public") names.push(`${prefix}${schema.name}.${action}`);
  }
  return names.sort();
}

/** The backticked `service.action` names of rule 6 (from "6." to the next rule). */
function documentedActions(): string[] {
  const page = fs.readFileSync(path.join(ROOT, "docs/architecture.md"), "utf8");
  const rule = /^6\. \*\*Visibility[\s\S]*?(?=^\d+\. \*\*)/m.exec(page)?.[0] ?? "";
  return [...rule.matchAll(/`((?:v\d+\.)?[a-z][a-zA-Z0-9]*\.[a-z][a-zA-Z0-9]*)`/g)]
    .map(m => m[1])
    .sort();
}

describe("docs/architecture.md rule 6", () => {
  it("lists exactly the actions with visibility public", async () => {
    const code = await publicActions();
    const docs = documentedActions();
    expect(code.length, "the services have public actions (the import works)").toBeGreaterThan(0);
    expect(new Set(docs).size, "an action listed twice").toBe(docs.length);
    expect({
      missingFromDocs: code.filter(a => !docs.includes(a)),
      notPublicInCode: docs.filter(a => !code.includes(a)),
    }).toEqual({ missingFromDocs: [], notPublicInCode: [] });
  });
});
