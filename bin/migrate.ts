import path from "node:path";
import { envStr } from "../lib/shared/env";
import { lockDataDir } from "../lib/store/data-dir-lock";
import { SqliteDatabase, sqliteFile } from "../lib/store/sqlite/sqlite-database";
import {
  migrateAll,
  previewMigration,
  type MigrationLogger,
  type OpenDatabase,
} from "../lib/store/migrate/migrate";
import { SERVICE_COLLECTIONS } from "../mixins/service-collections";

/**
 * `npm run migrate`: moves every service's NeDB files under DATA_DIR into its Database,
 * then the files aside into DATA_DIR/<service>.nedb-migrated-<time>/ (docs/durability.md,
 * "Migrating from NeDB"). The services' collections come from SERVICE_COLLECTIONS; no
 * broker starts. Run it with the nodes stopped: it takes each folder's lock, and refuses a
 * folder a running node holds. Run again after a failure: it goes on where it stopped.
 *
 *   npm run migrate                 migrate DATA_DIR (default ./data)
 *   npm run migrate -- --dry-run    say what it would migrate, touching nothing
 */

/** The Database a service's files go to: its SQLite file, as db.mixin.ts opens it. */
const sqliteOpener =
  (dataDir: string): OpenDatabase =>
  (service, collections) =>
    Promise.resolve(
      SqliteDatabase.open(collections, { filename: sqliteFile(dataDir, service), label: service }),
    );

const logger: MigrationLogger = {
  info: (obj, msg) => process.stdout.write(`${msg} ${JSON.stringify(obj)}\n`),
  warn: (obj, msg) => process.stderr.write(`WARN ${msg} ${JSON.stringify(obj)}\n`),
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const unknown = args.filter(a => a !== "--dry-run");
  if (unknown.length > 0) throw new Error(`Unknown arguments: ${unknown.join(" ")}`);
  if (envStr("DATA_DIR") === ":memory:") throw new Error("DATA_DIR=:memory: has no files");
  const dataDir = path.resolve(envStr("DATA_DIR", "./data"));

  if (args.includes("--dry-run")) {
    const preview = previewMigration(dataDir, SERVICE_COLLECTIONS);
    if (Object.keys(preview).length === 0) logger.info({ dataDir }, "No NeDB files to migrate");
    for (const [service, collections] of Object.entries(preview))
      for (const [collection, p] of Object.entries(collections))
        logger.info(
          { service, collection, ...p },
          p.undeclared ? "Would move aside, not migrate" : "Would migrate",
        );
    return;
  }

  const results = await migrateAll(dataDir, SERVICE_COLLECTIONS, sqliteOpener(dataDir), logger, {
    lock: lockDataDir,
  });
  if (Object.keys(results).length === 0) logger.info({ dataDir }, "No NeDB files to migrate");
}

main().catch((err: unknown) => {
  process.stderr.write(`migrate: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
