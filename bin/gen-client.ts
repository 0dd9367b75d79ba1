import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { BrokerOptions, ServiceSchema } from "moleculer";

/**
 * `npm run gen:client`, step one: starts the whole platform in this process (no
 * transporter, NeDB in memory, the gateway on a free port of 127.0.0.1), takes
 * GET /api/openapi.json as the gateway serves it and writes it to client/openapi.json.
 * The npm script then runs openapi-typescript on it into client/schema.d.ts, the types of
 * client/index.ts. Both files are committed; test/integration/openapi.test.ts fails when
 * they differ from what the code serves now.
 */

const ROOT = path.resolve(__dirname, "../..");
const OUT = path.join(ROOT, "client/openapi.json");

async function main(): Promise<void> {
  // Before the config and services load: they read env then.
  Object.assign(process.env, {
    DATA_DIR: ":memory:",
    STORE_SYNC: "false",
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
    // Nothing is signed that leaves this process; a random secret spares the dev-secret warning.
    JWT_SECRET: process.env.JWT_SECRET ?? randomBytes(32).toString("hex"),
  });
  delete process.env.TRANSPORTER;
  const { ServiceBroker } = await import("moleculer");
  const config = (await import("../moleculer.config")).default as BrokerOptions;
  const broker = new ServiceBroker({ ...config, transporter: null, nodeID: "gen-client" });
  const dir = path.join(__dirname, "../services");
  for (const file of readdirSync(dir)
    .filter(f => f.endsWith(".service.js"))
    .sort()) {
    const mod = (await import(path.join(dir, file))) as { default: ServiceSchema };
    broker.createService(mod.default);
  }
  await broker.start();
  try {
    const api = broker.getLocalService("api") as unknown as {
      server: { address(): { port: number } };
    };
    const res = await fetch(`http://127.0.0.1:${api.server.address().port}/api/openapi.json`);
    if (res.status !== 200) throw new Error(`GET /api/openapi.json answered ${res.status}`);
    const doc: unknown = await res.json();
    mkdirSync(path.dirname(OUT), { recursive: true });
    writeFileSync(OUT, `${JSON.stringify(doc, null, 2)}\n`);
    process.stdout.write(`wrote ${path.relative(ROOT, OUT)}\n`);
  } finally {
    await broker.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`gen-client: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
