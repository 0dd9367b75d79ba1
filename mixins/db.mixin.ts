import fs from "node:fs";
import path from "node:path";
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { envBool, envStr } from "../lib/shared/env";
import { lockDataDir } from "../lib/store/nedb/data-dir-lock";
import { openMongoStore } from "../lib/store/mongo/mongo-store";
import { openNedbStore } from "../lib/store/nedb/nedb-store";
import type { CollectionSpec, Doc, Store } from "../lib/store/store";
import { defineMixin } from "./define";

/**
 * Storage for a service, chosen by env (docs/architecture.md):
 *  - MONGO_URI set: MongoDB, one database per service (`<db>-<service>`);
 *  - DATA_DIR=":memory:": NeDB in memory (tests);
 *  - otherwise NeDB files under DATA_DIR/<service>/<collection>.db.
 * A service owns several collections; `this.store(name)` gives each as a Store
 * (lib/store/store.ts), which is what the service hands to its engines.
 */

export interface DbSettings extends ServiceSettingSchema {
  db: {
    mongoUri?: string;
    dataDir: string;
    /** NeDB files: fdatasync before acknowledging (STORE_SYNC, on unless turned off). */
    sync: boolean;
  };
}

export interface DbMethods {
  store<T extends Doc>(name: string): Store<T>;
}

export interface DbVars {
  stores: Record<string, Store>;
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
      if (!mongoUri && dataDir !== ":memory:") {
        const dir = path.resolve(dataDir, service);
        fs.mkdirSync(dir, { recursive: true });
        this.releaseLock = await lockDataDir(dir, service);
      }
      for (const [name, spec] of Object.entries(collections)) {
        this.stores[name] = mongoUri
          ? await openMongoStore(mongoUri, service, name, spec, this)
          : await openNedbStore(name, spec, {
              filename:
                dataDir === ":memory:" ? undefined : path.resolve(dataDir, service, `${name}.db`),
              sync,
              label: `${service}/${name}`,
              logger: this.logger,
            });
      }
    },

    async stopped() {
      for (const store of Object.values(this.stores)) await store.close();
      this.releaseLock?.();
    },
  });
}
