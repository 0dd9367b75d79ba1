import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  MigrationCountError,
  migrateAll,
  migrateDataDir,
  needsMigration,
  previewMigration,
} from "../../../../lib/store/migrate/migrate";
import { MapDatabase } from "../../../helpers/map-database";
import { SqliteDatabase, sqliteFile } from "../../../../lib/store/sqlite/sqlite-database";
import { byId, copyDataDir, expected } from "./fixtures";

/**
 * The migration of a DATA_DIR the NeDB store wrote (test/fixtures/nedb/) into a Database:
 * the service's SQLite file, as a first start does it; and, for the cases that count
 * commits or fake a crash midway, MapDatabase (test/helpers/map-database.ts).
 */

const quiet = { info: () => undefined, warn: () => undefined };
const TOKENS = ["tokens", "balances", "allowances", "journal", "outbox"];
const USERS = ["users", "challenges", "walletLinks"];
/** The fixture's two services and their collections. */
const BOTH = [
  ["tokens", TOKENS],
  ["users", USERS],
] as const;
const now = new Date(Date.UTC(2026, 11, 7, 22, 0, 0));

let cleanup: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanup) c();
  cleanup = [];
});
function dataDir(): string {
  const d = copyDataDir();
  cleanup.push(d.done);
  return d.dataDir;
}

const ls = (dir: string): string[] => fs.readdirSync(dir).sort();

describe("migrateDataDir", () => {
  it("moves every live document into the service's SQLite file, which a restart reads back", async () => {
    const dir = dataDir();
    const want = expected();
    for (const [service, collections] of BOTH) {
      const specs = Object.fromEntries(collections.map(c => [c, {}]));
      const filename = sqliteFile(dir, service);
      const db = SqliteDatabase.open(specs, { filename, label: service });
      expect((await migrateDataDir(dir, service, [...collections], db, quiet)).migrated).toBe(true);
      await db.close();
      const again = SqliteDatabase.open(specs, { filename, label: service });
      for (const [name, docs] of Object.entries(want[service]))
        expect(byId(await again.store(name).find({})), `${service}/${name}`).toEqual(docs);
      await again.close();
      expect(needsMigration(dir, service)).toBe(false);
    }
  });

  it("puts every live document in the database, removed ones left out, and moves the files aside", async () => {
    const dir = dataDir();
    const want = expected();
    for (const [service, collections] of BOTH) {
      const db = new MapDatabase([...collections]);
      expect(needsMigration(dir, service)).toBe(true);
      const before = ls(path.join(dir, service));
      const res = await migrateDataDir(dir, service, [...collections], db, quiet, {
        batch: 7,
        now,
      });
      expect(res.migrated).toBe(true);
      for (const [name, docs] of Object.entries(want[service])) {
        expect(byId(db.docs(name)), `${service}/${name}`).toEqual(docs);
        expect(res.collections[name]).toMatchObject({ read: docs.length, inserted: docs.length });
      }
      // The files, untouched, beside the service's folder; the folder stays, empty of them.
      expect(res.movedTo).toBe(path.join(dir, `${service}.nedb-migrated-20261207T220000000Z`));
      expect(ls(res.movedTo!)).toEqual(before);
      for (const f of before)
        expect(fs.readFileSync(path.join(res.movedTo!, f))).toEqual(
          fs.readFileSync(path.join(__dirname, "../../../fixtures/nedb/data-dir", service, f)),
        );
      expect(ls(path.join(dir, service))).toEqual([]);
      expect(needsMigration(dir, service)).toBe(false);
    }
    // Batches of 7: the 60-odd balances took several transactions.
    const balances = new MapDatabase(TOKENS);
    const d2 = dataDir();
    await migrateDataDir(d2, "tokens", TOKENS, balances, quiet, { batch: 7 });
    expect(balances.commits).toBeGreaterThan(want.tokens.balances.length / 7);
  });

  it("keeps Dates, nested objects and big decimal strings as the NeDB store handed them out", async () => {
    const dir = dataDir();
    const db = new MapDatabase(TOKENS);
    await migrateDataDir(dir, "tokens", TOKENS, db, quiet);
    const [j1] = db.docs("journal");
    expect(j1.at).toBeInstanceOf(Date);
    expect(j1.at).toEqual(new Date(Date.UTC(2026, 11, 7, 10, 0, 0)));
    expect(j1.pending).toBeUndefined(); // $unset before the migration
    const [tok1] = db.docs("tokens");
    expect(tok1.supply).toBe("123456789012345678901234567890.123456789012345678");
    expect(tok1.metadata).toEqual({
      name: "Mint v2",
      tags: ["a", "b"],
      links: [{ rel: "site", href: "https://x.y" }],
    });
  });

  it("a second run does nothing: no NeDB file is left", async () => {
    const dir = dataDir();
    const db = new MapDatabase(USERS);
    await migrateDataDir(dir, "users", USERS, db, quiet, { now });
    const commits = db.commits;
    const again = await migrateDataDir(dir, "users", USERS, db, quiet);
    expect(again).toEqual({ migrated: false, collections: {}, undeclared: [] });
    expect(db.commits).toBe(commits);
    expect(ls(dir)).toEqual(["tokens", "users", "users.nedb-migrated-20261207T220000000Z"]);
  });

  it("does nothing for a service without a folder, or with an empty one", async () => {
    const dir = dataDir();
    const db = new MapDatabase(["x"]);
    expect((await migrateDataDir(dir, "nothing", ["x"], db, quiet)).migrated).toBe(false);
    fs.mkdirSync(path.join(dir, "empty"));
    fs.writeFileSync(path.join(dir, "empty", "LOCK"), "1@host");
    expect((await migrateDataDir(dir, "empty", ["x"], db, quiet)).migrated).toBe(false);
    expect(ls(path.join(dir, "empty"))).toEqual(["LOCK"]);
  });

  it("run again after a crash midway, it inserts only what is missing and ends the same", async () => {
    const dir = dataDir();
    const want = expected();
    const db = new MapDatabase(TOKENS);
    db.failAfterCommits = 4;
    await expect(migrateDataDir(dir, "tokens", TOKENS, db, quiet, { batch: 10 })).rejects.toThrow(
      "crash",
    );
    // Nothing moved: the files are all still there.
    expect(needsMigration(dir, "tokens")).toBe(true);
    const partly = TOKENS.reduce((n, c) => n + db.docs(c).length, 0);
    expect(partly).toBeGreaterThan(0);
    const res = await migrateDataDir(dir, "tokens", TOKENS, db, quiet, { batch: 10 });
    expect(res.migrated).toBe(true);
    const total = Object.values(want.tokens).reduce((n, docs) => n + docs.length, 0);
    const inserted = Object.values(res.collections).reduce((n, c) => n + c.inserted, 0);
    expect(inserted).toBe(total - partly);
    for (const [name, docs] of Object.entries(want.tokens))
      expect(byId(db.docs(name)), name).toEqual(docs);
  });

  it("a run stopped while moving the files moves the rest next time, inserting nothing", async () => {
    const dir = dataDir();
    const db = new MapDatabase(TOKENS);
    await migrateDataDir(dir, "tokens", TOKENS, db, quiet, { now });
    // As if the move had stopped after the first collection: put the others back.
    const aside = path.join(dir, "tokens.nedb-migrated-20261207T220000000Z");
    for (const f of ls(aside).filter(f => !f.startsWith("balances")))
      fs.renameSync(path.join(aside, f), path.join(dir, "tokens", f));
    const res = await migrateDataDir(dir, "tokens", TOKENS, db, quiet);
    expect(res.migrated).toBe(true);
    expect(Object.values(res.collections).every(c => c.inserted === 0)).toBe(true);
    expect(needsMigration(dir, "tokens")).toBe(false);
  });

  it("refuses, moving nothing, when the database does not end with the file's count", async () => {
    const dir = dataDir();
    const db = new MapDatabase(USERS);
    await db.store("users").insert({ _id: "someone-else", email: "z@x.y" });
    const run = migrateDataDir(dir, "users", USERS, db, quiet);
    await expect(run).rejects.toThrow(MigrationCountError);
    await expect(run).rejects.toThrow(
      "users/users: the NeDB file holds 2 documents, the database 3",
    );
    expect(needsMigration(dir, "users")).toBe(true);
    expect(ls(dir)).toEqual(["tokens", "users"]);
  });

  it("moves aside, without migrating, the file of a collection the service no longer declares", async () => {
    const dir = dataDir();
    const warnings: string[] = [];
    const logger = { info: () => undefined, warn: (_o: object, msg: string) => warnings.push(msg) };
    const db = new MapDatabase(["users"]);
    const res = await migrateDataDir(dir, "users", { users: {} }, db, logger, { now });
    expect(res.undeclared).toEqual(["challenges"]);
    expect(Object.keys(res.collections)).toEqual(["users"]);
    expect(ls(res.movedTo!)).toEqual(["challenges.db", "users.db"]);
    expect(warnings).toContain(
      "A NeDB file of a collection the service does not declare: not migrated, moved aside",
    );
    expect(warnings).toContain("Left an incomplete last line out of the migration");
  });
});

describe("migrateAll", () => {
  it("migrates each service folder into its own Database under its lock, once", async () => {
    const dir = dataDir();
    fs.mkdirSync(path.join(dir, "stranger"));
    fs.writeFileSync(path.join(dir, "stranger", "things.db"), '{"_id":"a"}\n');
    const want = expected();
    const services = {
      tokens: Object.fromEntries(TOKENS.map(c => [c, {}])),
      users: Object.fromEntries(USERS.map(c => [c, {}])),
    };
    const opened: Record<string, MapDatabase> = {};
    const events: string[] = [];
    const open = async (service: string, collections: Record<string, object>) => {
      events.push(`open ${service}`);
      return (opened[service] = new MapDatabase(Object.keys(collections)));
    };
    const lock = async (_dir: string, service: string) => {
      events.push(`lock ${service}`);
      return () => void events.push(`release ${service}`);
    };
    const warnings: string[] = [];
    const logger = { info: () => undefined, warn: (_o: object, msg: string) => warnings.push(msg) };

    expect(previewMigration(dir, services).users.users).toMatchObject({
      documents: 2,
      tornBytes: Buffer.byteLength('{"_id":"u3","email":"c@x'),
      undeclared: false,
    });
    const results = await migrateAll(dir, services, open, logger, { lock, now });
    expect(Object.keys(results)).toEqual(["tokens", "users"]);
    expect(events).toEqual([
      "lock tokens",
      "open tokens",
      "release tokens",
      "lock users",
      "open users",
      "release users",
    ]);
    for (const service of ["tokens", "users"])
      for (const [name, docs] of Object.entries(want[service]))
        expect(byId(opened[service].docs(name))).toEqual(docs);
    expect(warnings).toContain("No such service: left as it is");
    expect(ls(path.join(dir, "stranger"))).toEqual(["things.db"]);
    expect(ls(dir)).toEqual([
      "stranger",
      "tokens",
      "tokens.nedb-migrated-20261207T220000000Z",
      "users",
      "users.nedb-migrated-20261207T220000000Z",
    ]);

    events.length = 0;
    expect(await migrateAll(dir, services, open, logger, { lock })).toEqual({});
    expect(events).toEqual([]);
    expect(previewMigration(dir, services)).toEqual({
      stranger: { things: expect.objectContaining({ documents: 1, undeclared: true }) },
    });
  });
});
