import fs from "node:fs";
import path from "node:path";
import type { CollectionSpec, Database, Doc } from "../store";
import { nedbCollectionsIn, nedbFilesOf, readNedbCollection } from "./nedb-files";

/**
 * Moves a service's NeDB collections (DATA_DIR/<service>/<collection>.db) into a Database
 * (docs/durability.md, "Migrating from NeDB"):
 *
 *  1. every declared collection with a file is read (lib/store/migrate/nedb-files.ts: what
 *     the present NeDB store would load at start, torn last line left out);
 *  2. its live documents go into the Database in batches, each batch one transaction, those
 *     whose `_id` the Database holds already skipped: a run stopped midway (a crash, a
 *     kill) is simply run again;
 *  3. each collection's count in the Database must equal the file's, or nothing is moved
 *     and the run fails, naming the collection;
 *  4. only once every collection is verified, the NeDB files are moved aside, one rename
 *     each, into DATA_DIR/<service>.nedb-migrated-<time>/ (kept, never deleted): a folder
 *     without NeDB files is not migrated again, and a run stopped while moving finds the
 *     files not yet moved, migrates nothing new and moves them.
 *
 * Only NeDB's files are moved (the folder itself stays, with its LOCK and whatever the new
 * store keeps there). A `.db` file of a collection the service no longer declares is not
 * migrated (the present store never opens it either): it is moved aside with the others,
 * with a warning. The caller holds the folder's lock (lockDataDir) if a node may be running.
 */

export interface MigrationLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface MigrateOptions {
  /** Documents per insertMany, each in its own transaction (default 500). */
  batch?: number;
  /** The time in the aside folder's name (default now). */
  now?: Date;
}

export interface CollectionMigration {
  /** Live documents in the NeDB file. */
  read: number;
  /** Of those, how many this run inserted (the others were there from a previous run). */
  inserted: number;
  /** Bytes of a torn last line left out. */
  tornBytes: number;
}

export interface MigrationResult {
  /** False when the folder held no NeDB file: nothing was done. */
  migrated: boolean;
  /** Where the NeDB files went. */
  movedTo?: string;
  collections: Record<string, CollectionMigration>;
  /** NeDB files of collections the service does not declare: moved aside, not migrated. */
  undeclared: string[];
}

export class MigrationCountError extends Error {
  constructor(
    readonly service: string,
    readonly collection: string,
    readonly expected: number,
    readonly found: number,
  ) {
    super(
      `Migrating ${service}/${collection}: the NeDB file holds ${expected} documents, the ` +
        `database ${found}; the NeDB files stay where they are`,
    );
    this.name = "MigrationCountError";
  }
}

/** Whether DATA_DIR/<service>/ holds NeDB files still to migrate. */
export function needsMigration(dataDir: string, service: string): boolean {
  return nedbCollectionsIn(path.resolve(dataDir, service)).length > 0;
}

/** `2026-12-07T22:41:03.120Z` as a file name: `20261207T224103120Z`. */
const stamp = (d: Date): string => d.toISOString().replace(/[-:.]/g, "");

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function copyCollection(
  database: Database,
  name: string,
  docs: Doc[],
  batch: number,
): Promise<number> {
  let inserted = 0;
  for (let i = 0; i < docs.length; i += batch) {
    const slice = docs.slice(i, i + batch);
    const ids = slice.map(d => d._id);
    inserted += await database.transaction(async tx => {
      const store = tx.store<Doc>(name);
      const there = new Set(
        (await store.find({ _id: { $in: ids } })).map(d => String((d as Doc)._id)),
      );
      const missing = slice.filter(d => !there.has(d._id));
      if (missing.length > 0) await store.insertMany(missing);
      return missing.length;
    });
  }
  return inserted;
}

/**
 * Migrates DATA_DIR/<service>/ into `database` (see the module comment) when it holds NeDB
 * files; resolves at once with `migrated: false` when it does not. `collections` are the
 * service's (what it passes to DbMixin); `database` is open on them.
 */
export async function migrateDataDir(
  dataDir: string,
  service: string,
  collections: Record<string, CollectionSpec> | string[],
  database: Database,
  logger: MigrationLogger,
  opts: MigrateOptions = {},
): Promise<MigrationResult> {
  const dir = path.resolve(dataDir, service);
  const declared = new Set(Array.isArray(collections) ? collections : Object.keys(collections));
  const onDisk = nedbCollectionsIn(dir);
  const result: MigrationResult = { migrated: false, collections: {}, undeclared: [] };
  if (onDisk.length === 0) return result;
  const batch = Math.max(1, opts.batch ?? 500);
  logger.info({ service, dir, collections: onDisk }, "Migrating NeDB files");

  for (const name of onDisk) {
    if (!declared.has(name)) {
      result.undeclared.push(name);
      logger.warn(
        { service, collection: name },
        "A NeDB file of a collection the service does not declare: not migrated, moved aside",
      );
      continue;
    }
    const file = readNedbCollection(dir, name)!;
    if (file.tornBytes > 0)
      logger.warn(
        { file: file.file, bytes: file.tornBytes },
        "Left an incomplete last line out of the migration",
      );
    const docs = [...file.docs.values()];
    const inserted = await copyCollection(database, name, docs, batch);
    const found = await database.store(name).count({});
    if (found !== docs.length) throw new MigrationCountError(service, name, docs.length, found);
    result.collections[name] = { read: docs.length, inserted, tornBytes: file.tornBytes };
    logger.info(
      { service, collection: name, documents: docs.length, inserted },
      "Migrated a NeDB collection",
    );
  }

  // Every collection is in the database: the NeDB files go aside, one rename each.
  const aside = path.resolve(dataDir, `${service}.nedb-migrated-${stamp(opts.now ?? new Date())}`);
  fs.mkdirSync(aside, { recursive: true });
  for (const name of onDisk)
    for (const f of nedbFilesOf(dir, name)) fs.renameSync(f, path.join(aside, path.basename(f)));
  fsyncDir(aside);
  fsyncDir(dir);
  result.migrated = true;
  result.movedTo = aside;
  logger.info({ service, movedTo: aside }, "NeDB files moved aside: migration done");
  return result;
}

/** Opens the Database a service's collections are migrated into. */
export type OpenDatabase = (
  service: string,
  collections: Record<string, CollectionSpec>,
) => Promise<Database>;

export interface MigrateAllOptions extends MigrateOptions {
  /** Takes DATA_DIR/<service>/'s lock for the run (lockDataDir); returns its release. */
  lock?: (dir: string, service: string) => Promise<() => void>;
}

/** The folders under DATA_DIR that hold NeDB files, by service name. */
export function nedbServicesIn(dataDir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(path.resolve(dataDir), { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return entries
    .filter(e => e.isDirectory() && !e.name.includes(".nedb-migrated-"))
    .map(e => e.name)
    .filter(name => needsMigration(dataDir, name))
    .sort();
}

/**
 * Migrates every service folder under DATA_DIR that holds NeDB files (`npm run migrate`):
 * each service in `services` (name → its collections) into the Database `open` gives,
 * closed after. A folder of a service not in `services` is left as it is, with a warning.
 */
export async function migrateAll(
  dataDir: string,
  services: Record<string, Record<string, CollectionSpec>>,
  open: OpenDatabase,
  logger: MigrationLogger,
  opts: MigrateAllOptions = {},
): Promise<Record<string, MigrationResult>> {
  const results: Record<string, MigrationResult> = {};
  for (const service of nedbServicesIn(dataDir)) {
    const collections = services[service];
    if (!collections) {
      logger.warn(
        { service, dir: path.resolve(dataDir, service) },
        "No such service: left as it is",
      );
      continue;
    }
    const release = await opts.lock?.(path.resolve(dataDir, service), service);
    try {
      const database = await open(service, collections);
      try {
        results[service] = await migrateDataDir(
          dataDir,
          service,
          collections,
          database,
          logger,
          opts,
        );
      } finally {
        await database.close();
      }
    } finally {
      release?.();
    }
  }
  return results;
}

export interface CollectionPreview {
  file: string;
  documents: number;
  tornBytes: number;
  /** The service does not declare it: it would be moved aside, not migrated. */
  undeclared: boolean;
}

/** What a migration of DATA_DIR would read, touching nothing (`npm run migrate -- --dry-run`). */
export function previewMigration(
  dataDir: string,
  services: Record<string, Record<string, CollectionSpec>>,
): Record<string, Record<string, CollectionPreview>> {
  const out: Record<string, Record<string, CollectionPreview>> = {};
  for (const service of nedbServicesIn(dataDir)) {
    const dir = path.resolve(dataDir, service);
    out[service] = {};
    for (const name of nedbCollectionsIn(dir)) {
      const file = readNedbCollection(dir, name)!;
      out[service][name] = {
        file: file.file,
        documents: file.docs.size,
        tornBytes: file.tornBytes,
        undeclared: !(services[service] && name in services[service]),
      };
    }
  }
  return out;
}
