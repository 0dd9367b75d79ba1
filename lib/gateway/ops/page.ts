import fs from "node:fs";
import type { ServerResponse } from "node:http";
import path from "node:path";

/** The operator page's static files (public/ops), served by the gateway (mixins/ops.mixin.ts). */

/** public/ops, from the sources (lib/gateway/ops) or from dist/lib/… (npm start, the Docker image). */
const STATIC_DIR = [
  path.resolve(__dirname, "../../../public/ops"),
  path.resolve(__dirname, "../../../../public/ops"),
].find(dir => fs.existsSync(path.join(dir, "index.html")));

const STATIC_TYPES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "ops.js": "text/javascript; charset=utf-8",
  "ops.css": "text/css; charset=utf-8",
};
/** The three files, read once: a fixed, small set. */
const files = new Map<string, Buffer>();
function staticFile(name: string): Buffer {
  let body = files.get(name);
  if (!body) {
    if (!STATIC_DIR) throw new Error("public/ops is missing from this installation");
    body = fs.readFileSync(path.join(STATIC_DIR, name));
    files.set(name, body);
  }
  return body;
}

/** Nothing from elsewhere: the page loads its own script and style, talks to its own origin. */
const PAGE_HEADERS = {
  "Cache-Control": "no-store",
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
};

/** One of the page's three files, with headers that let it load nothing from elsewhere. */
export function sendStatic(res: ServerResponse, name: string): void {
  res.writeHead(200, { ...PAGE_HEADERS, "Content-Type": STATIC_TYPES[name] });
  res.end(staticFile(name));
}
