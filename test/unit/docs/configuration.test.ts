import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * docs/configuration.md lists every env var the code reads. The code is scanned with the
 * TypeScript parser (not run), so a read anywhere counts, also one behind a condition:
 *  - `process.env.X`, `process.env["X"]` and `const { X } = process.env`;
 *  - a call, with a string literal first, of an env reader: lib/shared/env.ts's envStr, envInt,
 *    envBool, envList, and any function found to pass its parameter on to one or to
 *    `process.env[…]` (requiredInProduction, bin/cluster.ts's env, a new wrapper);
 *  - `process.env[v]` with `v` looping over an array of string literals.
 * A read whose name the scan cannot tell (built at run time) fails the test: name it
 * plainly, or teach the scan.
 */

const ROOT = path.resolve(__dirname, "../../..");
const SOURCES = ["moleculer.config.ts", "services", "lib", "mixins", "middlewares", "bin"];
const BASE_READERS = ["envStr", "envInt", "envBool", "envList"];

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    const stat = fs.statSync(p);
    if (stat.isDirectory()) for (const f of fs.readdirSync(p).sort()) walk(path.join(p, f));
    else if (/\.(ts|mts|cts)$/.test(p) && !p.endsWith(".d.ts")) out.push(p);
  };
  for (const s of SOURCES) walk(path.join(ROOT, s));
  return out;
}

const isProcessEnv = (e: ts.Expression): boolean =>
  ts.isPropertyAccessExpression(e) &&
  ts.isIdentifier(e.expression) &&
  e.expression.text === "process" &&
  e.name.text === "env";

const literal = (e: ts.Expression | undefined): string | undefined =>
  e && (ts.isStringLiteral(e) || ts.isNoSubstitutionTemplateLiteral(e)) ? e.text : undefined;

const calleeName = (c: ts.CallExpression): string | undefined =>
  ts.isIdentifier(c.expression) ? c.expression.text : undefined;

/** The function a node is inside, with the names of its parameters and its own name. */
function enclosingFunction(node: ts.Node): { name?: string; params: string[] } | undefined {
  for (let n: ts.Node | undefined = node.parent; n; n = n.parent) {
    if (ts.isFunctionDeclaration(n) || ts.isArrowFunction(n) || ts.isFunctionExpression(n)) {
      let name = n.name && ts.isIdentifier(n.name) ? n.name.text : undefined;
      if (!name && ts.isVariableDeclaration(n.parent) && ts.isIdentifier(n.parent.name))
        name = n.parent.name.text;
      const params = n.parameters.flatMap(p => (ts.isIdentifier(p.name) ? [p.name.text] : []));
      return { name, params };
    }
  }
  return undefined;
}

/** String literals `v` takes when `v` is the variable of a `for (const v of [...])`. */
function loopValues(id: ts.Identifier): string[] | undefined {
  for (let n: ts.Node | undefined = id.parent; n; n = n.parent) {
    if (!ts.isForOfStatement(n) || !ts.isVariableDeclarationList(n.initializer)) continue;
    const decl = n.initializer.declarations[0];
    if (!ts.isIdentifier(decl.name) || decl.name.text !== id.text) continue;
    if (!ts.isArrayLiteralExpression(n.expression)) return undefined;
    const values = n.expression.elements.map(e => literal(e));
    return values.every(v => v !== undefined) ? (values as string[]) : undefined;
  }
  return undefined;
}

interface Scan {
  names: Map<string, string[]>; // name -> where (file:line)
  unresolved: string[];
  readers: Set<string>;
}

function scan(): Scan {
  const files = sourceFiles().map(f =>
    ts.createSourceFile(f, fs.readFileSync(f, "utf8"), ts.ScriptTarget.Latest, true),
  );
  const readers = new Set(BASE_READERS);
  const visitAll = (fn: (n: ts.Node, sf: ts.SourceFile) => void): void => {
    for (const sf of files) {
      const visit = (n: ts.Node): void => {
        fn(n, sf);
        ts.forEachChild(n, visit);
      };
      visit(sf);
    }
  };

  // Readers: functions that hand a parameter to process.env[…] or to another reader.
  for (let grew = true; grew;) {
    grew = false;
    visitAll(n => {
      let arg: ts.Expression | undefined;
      if (ts.isElementAccessExpression(n) && isProcessEnv(n.expression)) arg = n.argumentExpression;
      else if (ts.isCallExpression(n) && readers.has(calleeName(n) ?? "")) arg = n.arguments[0];
      if (!arg || !ts.isIdentifier(arg)) return;
      const fn = enclosingFunction(n);
      if (fn?.name && fn.params.includes(arg.text) && !readers.has(fn.name)) {
        readers.add(fn.name);
        grew = true;
      }
    });
  }

  const names = new Map<string, string[]>();
  const unresolved: string[] = [];
  visitAll((n, sf) => {
    const where = `${path.relative(ROOT, sf.fileName)}:${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1}`;
    const add = (name: string) => names.set(name, [...(names.get(name) ?? []), where]);
    const dynamic = (arg: ts.Expression) => {
      // A reader passing its own parameter on is not a read of its own.
      const fn = enclosingFunction(n);
      if (ts.isIdentifier(arg) && fn?.name && readers.has(fn.name) && fn.params.includes(arg.text))
        return;
      const values = ts.isIdentifier(arg) ? loopValues(arg) : undefined;
      if (values) values.forEach(add);
      else unresolved.push(`${where}: ${n.getText(sf)}`);
    };

    if (ts.isPropertyAccessExpression(n) && isProcessEnv(n.expression)) {
      const assigned =
        ts.isBinaryExpression(n.parent) &&
        n.parent.left === n &&
        n.parent.operatorToken.kind === ts.SyntaxKind.EqualsToken;
      if (!assigned) add(n.name.text);
    } else if (ts.isElementAccessExpression(n) && isProcessEnv(n.expression)) {
      const name = literal(n.argumentExpression);
      if (name) add(name);
      else dynamic(n.argumentExpression);
    } else if (
      ts.isVariableDeclaration(n) &&
      n.initializer &&
      isProcessEnv(n.initializer) &&
      ts.isObjectBindingPattern(n.name)
    ) {
      for (const el of n.name.elements) {
        const key = el.propertyName ?? el.name;
        if (ts.isIdentifier(key)) add(key.text);
        else unresolved.push(`${where}: ${el.getText(sf)}`);
      }
    } else if (ts.isCallExpression(n) && readers.has(calleeName(n) ?? "") && n.arguments[0]) {
      const name = literal(n.arguments[0]);
      if (name) add(name);
      else dynamic(n.arguments[0]);
    }
  });
  return { names, unresolved, readers };
}

/** Names in backticks in the first cell of docs/configuration.md's table rows. */
function documented(): Set<string> {
  const page = fs.readFileSync(path.join(ROOT, "docs/configuration.md"), "utf8");
  const names = new Set<string>();
  for (const line of page.split("\n")) {
    const cell = /^\|([^|]*)\|/.exec(line)?.[1];
    if (!cell) continue;
    for (const m of cell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.add(m[1]);
  }
  return names;
}

describe("docs/configuration.md", () => {
  const found = scan();

  it("the scan finds the env reads it knows of (it still works)", () => {
    expect([...found.readers]).toEqual(
      expect.arrayContaining([...BASE_READERS, "requiredInProduction"]),
    );
    for (const name of ["TRANSPORTER", "JWT_SECRET", "CATALOG_RECLEAN_MS", "HEALTH_PORT"])
      expect(found.names.has(name), name).toBe(true);
    expect(found.names.size).toBeGreaterThan(80);
  });

  it("every env read names its variable plainly", () => {
    expect(found.unresolved).toEqual([]);
  });

  it("lists every env var the code reads", () => {
    const docs = documented();
    const missing = [...found.names.keys()]
      .filter(name => !docs.has(name))
      .sort()
      .map(name => `${name} (read at ${found.names.get(name)?.join(", ")})`);
    expect(missing, "env vars read by the code and missing from docs/configuration.md").toEqual([]);
  });
});
