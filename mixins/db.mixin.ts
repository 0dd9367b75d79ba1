import fs from "node:fs";
import path from "node:path";
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { envBool, envStr } from "../lib/shared/env";
import { lockDataDir } from "../lib/store/data-dir-lock";
import { openMongoDatabase } from "../lib/store/mongo/mongo-store";
import { SqliteDatabase, sqliteFile } from "../lib/store/sqlite/sqlite-database";
import { migrateDataDir } from "../lib/store/migrate/migrate";
import type { CollectionSpec, Database, Doc, Store } from "../lib/store/store";
import { defineMixin } from "./define";

/**
 * Storage for a service, chosen by env (docs/architecture.md):
 *  - MONGO_URI set: MongoDB, one database per service (`<db>-<service>`), a replica set
 *    (transactions need one);
 *  - otherwise SQLite (node:sqlite), one file per service, DATA_DIR/<service>/<service>.sqlite
 *    (a DATA_DIR an earlier version wrote with NeDB is migrated into it at the first start);
 *  - DATA_DIR=":memory:": SQLite in memory (tests).
 * A service owns several collections; `this.store(name)` gives each as a Store
 * (lib/store/store.ts), which is what the service hands to its engines, and
 * `this.database` the same stores with transactions over them.
 */

export interface DbSettings extends ServiceSettingSchema {
  db: {
    mongoUri?: string;
    dataDir: string;
    /** Embedded files: fsync before acknowledging (STORE_SYNC, on unless turned off). */
    sync: boolean;
  };
}

export interface DbMethods {
  store<T extends Doc>(name: string): Store<T>;
}

export interface DbVars {
  stores: Record<string, Store>;
  database: Database;
  releaseLock?: () => void;
}

/** What a service using DbMixin adds to `this`. */
export type DbThis = DbMethods & DbVars;

export function DbMixin(collections: Record<string, CollectionSpec>): Partial<ServiceSchema> {
  return defineMixin<DbSettings, DbMethods, DbVars>({
    settings: {
      db: {
        mongoUri: envStr("MONGO_URI"),
        dataDir: envStr("DATA_DIR", "./data"),
        sync: envBool("STORE_SYNC", true),
      },
    },

    methods: {
      store<T extends Doc>(name: string): Store<T> {
        const s = this.stores[name];
        if (!s) throw new Error(`Unknown collection ${name}`);
        // Each collection holds one document type; the caller names it.
        return s as unknown as Store<T>;
      },
    },

    created() {
      this.stores = {};
    },

    async started() {
      const { mongoUri, dataDir, sync } = this.settings.db;
      // Unsynced writes may vanish with the machine: for tests and development only.
      if (!sync && envStr("NODE_ENV") === "production")
        throw new Error(
          "STORE_SYNC=false is refused with NODE_ENV=production: acknowledged must mean on disk",
        );
      const service = this.name;
      const inMemory = dataDir === ":memory:";
      if (!mongoUri && !inMemory) {
        const dir = path.resolve(dataDir, service);
        fs.mkdirSync(dir, { recursive: true });
        this.releaseLock = await lockDataDir(dir, service);
      }
      try {
        if (mongoUri) {
          this.database = await openMongoDatabase(mongoUri, service, collections, this);
        } else {
          this.database = SqliteDatabase.open(collections, {
            filename: inMemory ? undefined : sqliteFile(dataDir, service),
            sync,
            label: `${service}/sqlite`,
            logger: this.logger,
          });
          // A DATA_DIR an earlier version wrote with NeDB: its files move in at the first start.
          if (!inMemory)
            await migrateDataDir(dataDir, service, collections, this.database, this.logger);
        }
      } catch (err) {
        this.releaseLock?.();
        this.releaseLock = undefined;
        throw err;
      }
      // The same store objects either way: `this.store(name)` is `this.database.store(name)`.
      for (const name of Object.keys(collections)) this.stores[name] = this.database.store(name);
    },

    async stopped() {
      await this.database?.close();
      this.releaseLock?.();
    },
  });
}
