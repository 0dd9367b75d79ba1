/**
 * CI's import-cycle check (npm run check:cycles): the module graph as the TypeScript
 * compiler resolves it, over every file of tsconfig.json, and its strongly connected
 * components (Tarjan). Type-only imports count too: a cycle of types is still a knot a
 * reader has to untie. Prints each cycle and exits 1 when there is one.
 */
import * as path from "node:path";
import ts from "typescript";

const root = path.resolve(__dirname, "..", "..");
const configPath = ts.findConfigFile(root, ts.sys.fileExists, "tsconfig.json");
if (!configPath) throw new Error("tsconfig.json not found");
const config = ts.readConfigFile(configPath, ts.sys.readFile);
const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, path.dirname(configPath));
const files = parsed.fileNames.filter(f => !f.includes("node_modules"));
const own = new Set(files.map(f => path.resolve(f)));

const graph = new Map<string, string[]>();
for (const file of own) {
  const info = ts.preProcessFile(ts.sys.readFile(file) ?? "", true, true);
  const deps: string[] = [];
  for (const ref of info.importedFiles) {
    const resolved = ts.resolveModuleName(ref.fileName, file, parsed.options, ts.sys).resolvedModule
      ?.resolvedFileName;
    if (resolved && own.has(path.resolve(resolved))) deps.push(path.resolve(resolved));
  }
  graph.set(file, deps);
}

// Tarjan's strongly connected components, iteratively deep enough for this tree.
let index = 0;
const idx = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
const cycles: string[][] = [];
function visit(v: string): void {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!idx.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v)!, low.get(w)!));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
  }
  if (low.get(v) !== idx.get(v)) return;
  const scc: string[] = [];
  let w: string;
  do {
    w = stack.pop()!;
    onStack.delete(w);
    scc.push(w);
  } while (w !== v);
  if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(scc);
}
for (const v of graph.keys()) if (!idx.has(v)) visit(v);

const rel = (f: string) => path.relative(root, f);
if (cycles.length === 0) {
  console.log(`No import cycle among ${graph.size} files`);
} else {
  for (const c of cycles) console.error(`Import cycle: ${c.map(rel).sort().join(" ↔ ")}`);
  process.exitCode = 1;
}
