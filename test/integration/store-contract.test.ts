import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DbMixin, type DbThis } from "../../mixins/db.mixin";
import {
  DuplicateKeyError,
  insertAllIfAbsent,
  type Database,
  type Doc,
  type Store,
} from "../../lib/store/store";
import { mongoDbName } from "../../lib/store/mongo/mongo-store";

/**
 * The Store contract every service relies on, run against each backend the env can
 * pick: SQLite in memory, SQLite files, and MongoDB whenever MONGO_URI is set (there is
 * no MongoDB server on the CI machine, so that block is skipped there).
 */

interface Item extends Doc {
  key: string;
  n: number;
  version: number;
}

interface Tagged extends Doc {
  key: string;
  group: string;
  n: number;
}

interface Thing extends Doc {
  key: string;
  amount?: string | number;
  flag?: boolean;
  pending?: Array<string | { key: string; n: number }>;
  wallets?: Array<{ address: string; chain: string }>;
  ops?: Record<string, number>;
  live?: string;
  name?: string;
  n?: number;
}

interface Account extends Doc {
  balance: number;
  version: number;
}

function contract(label: string, env: () => Record<string, string>) {
  describe(`Store contract: ${label}`, () => {
    const embedded = label !== "mongodb";
    let broker: ServiceBroker;
    let items: Store<Item>;
    let tagged: Store<Tagged>;
    let things: Store<Thing>;
    let accounts: Store<Account>;
    let database: Database;
    const saved = { ...process.env };

    beforeAll(async () => {
      Object.assign(process.env, env());
      broker = new ServiceBroker({ logger: false, namespace: `store-${label}` });
      const schema: ServiceSchema = {
        name: `contract${Date.now()}`,
        mixins: [
          DbMixin({
            items: { unique: ["key"] },
            tagged: { unique: ["key"], indexes: ["group"] },
            things: {
              unique: ["key"],
              indexes: ["wallets.address"],
              sparse: ["pending"],
              uniqueSparse: ["live"],
            },
            accounts: {},
          }),
        ],
      };
      const svc = broker.createService(schema) as unknown as DbThis;
      await broker.start();
      items = svc.store<Item>("items");
      tagged = svc.store<Tagged>("tagged");
      things = svc.store<Thing>("things");
      accounts = svc.store<Account>("accounts");
      database = svc.database;
      await items.remove({});
      await tagged.remove({});
      await things.remove({});
      await accounts.remove({});
    });
    afterAll(async () => {
      await broker.stop();
      process.env = saved;
    });

    it("inserts and finds, sorted and paged", async () => {
      for (let i = 0; i < 5; i++)
        await items.insert({ _id: `i${i}`, key: `k${i}`, n: i, version: 0 });
      expect((await items.findOne({ _id: "i3" }))?.n).toBe(3);
      expect(await items.findOne({ _id: "nope" })).toBeNull();
      const page = await items.find({ n: { $gte: 1 } }, { sort: { n: -1 }, offset: 1, limit: 2 });
      expect(page.map(d => d.n)).toEqual([3, 2]);
      expect(await items.count({ n: { $lt: 2 } })).toBe(2);
    });

    it("refuses a duplicate of a unique field with DuplicateKeyError", async () => {
      await expect(
        items.insert({ _id: "dupe", key: "k1", n: 9, version: 0 }),
      ).rejects.toBeInstanceOf(DuplicateKeyError);
      expect(await items.count({ key: "k1" })).toBe(1);
    });

    it("compare-and-set: of many racing updates on one version, exactly one wins", async () => {
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          items.updateOne({ _id: "i0", version: 0 }, { $set: { n: 100 + i, version: 1 } }),
        ),
      );
      const winners = results.filter(r => r !== null);
      expect(winners).toHaveLength(1);
      expect(winners[0]?.version).toBe(1);
      expect((await items.findOne({ _id: "i0" }))?.n).toBe(winners[0]?.n);
    });

    it("update returns how many matched, $inc is applied atomically", async () => {
      await Promise.all(
        Array.from({ length: 20 }, () => items.update({ _id: "i1" }, { $inc: { n: 1 } })),
      );
      expect((await items.findOne({ _id: "i1" }))?.n).toBe(21);
      expect(await items.update({ _id: "missing" }, { $set: { n: 1 } })).toBe(0);
    });

    it("queries by indexed fields see every update, whether it moves the key or not", async () => {
      for (const i of [1, 2, 3])
        await tagged.insert({ _id: `t${i}`, key: `k${i}`, group: "g1", n: i });
      await tagged.updateOne({ _id: "t1" }, { $set: { n: 10 } });
      await tagged.update({ group: "g1" }, { $inc: { n: 100 } });
      await tagged.updateOne({ _id: "t2" }, { $set: { group: "g2", n: 20 } });
      const g1 = await tagged.find({ group: "g1" }, { sort: { _id: 1 } });
      expect(g1.map(d => [d._id, d.n])).toEqual([
        ["t1", 110],
        ["t3", 103],
      ]);
      expect((await tagged.find({ group: "g2" })).map(d => [d._id, d.n])).toEqual([["t2", 20]]);
      expect((await tagged.findOne({ key: "k1" }))?.n).toBe(110);
      expect((await tagged.findOne({ _id: "t3" }))?.n).toBe(103);
    });

    it("an update that would break a unique index changes nothing", async () => {
      await expect(
        tagged.updateOne({ _id: "t3" }, { $set: { key: "k1", n: -1 } }),
      ).rejects.toBeInstanceOf(DuplicateKeyError);
      expect((await tagged.findOne({ _id: "t3" }))?.n).toBe(103);
      expect((await tagged.findOne({ key: "k3" }))?.n).toBe(103);
      expect((await tagged.findOne({ key: "k1" }))?._id).toBe("t1");
      expect((await tagged.find({ group: "g1" })).map(d => d.n).sort()).toEqual([103, 110]);
    });

    it("removes", async () => {
      expect(await items.remove({ n: { $gte: 2, $lt: 5 } })).toBe(3);
      expect(await items.count({})).toBe(2);
    });

    it("inserts many in one write; a duplicate refuses the write, insertAllIfAbsent skips it", async () => {
      const doc = (i: number): Tagged => ({ _id: `m${i}`, key: `mk${i}`, group: "many", n: i });
      expect(await tagged.insertMany([doc(0), doc(1), doc(2)])).toHaveLength(3);
      expect(await tagged.count({ group: "many" })).toBe(3);
      // m4 comes after the duplicate: MongoDB's ordered insert stops before it too.
      await expect(tagged.insertMany([doc(3), doc(1), doc(4)])).rejects.toBeInstanceOf(
        DuplicateKeyError,
      );
      expect(await tagged.findOne({ _id: "m4" })).toBeNull();
      // SQLite writes none of an insertMany that fails; MongoDB those before the duplicate.
      if (embedded) expect(await tagged.findOne({ _id: "m3" })).toBeNull();
      // What is there already is skipped, the rest is written, and the count says which.
      expect(await insertAllIfAbsent(tagged, [doc(2), doc(5), doc(4)])).toBe(2);
      expect(await insertAllIfAbsent(tagged, [doc(6), doc(7)])).toBe(2);
      expect(await insertAllIfAbsent(tagged, [])).toBe(0);
      const all = await tagged.find({ group: "many" }, { sort: { n: 1 } });
      expect(all.map(d => d.n)).toEqual(
        embedded ? [0, 1, 2, 4, 5, 6, 7] : expect.arrayContaining([0, 1, 2, 4, 5, 6, 7]),
      );
    });

    it("query operators: $in, $ne, $exists, $or, $regex, ranges, booleans, dotted paths", async () => {
      await things.insertMany([
        {
          _id: "a",
          key: "a",
          amount: "10",
          flag: true,
          pending: ["p1"],
          wallets: [{ address: "0xA", chain: "eth" }],
          name: "alpha",
          n: 1,
        },
        {
          _id: "b",
          key: "b",
          amount: "0",
          flag: false,
          name: "beta",
          n: 2,
          ops: { x1: 5 },
          tags: { color: "Blue" },
        },
        { _id: "c", key: "c", amount: 10, name: "Gamma", n: 3, live: "L1" },
      ]);
      const ids = async (q: Record<string, unknown>) =>
        (await things.find(q, { sort: { _id: 1 } })).map(d => d._id);
      expect(await ids({ _id: { $in: ["a", "c", "zz"] } })).toEqual(["a", "c"]);
      expect(await ids({ _id: { $in: [] } })).toEqual([]);
      // Decimal strings compare as strings, never equal to the number.
      expect(await ids({ amount: "10" })).toEqual(["a"]);
      expect(await ids({ amount: 10 })).toEqual(["c"]);
      expect(await ids({ amount: { $ne: "0" } })).toEqual(["a", "c"]);
      expect(await ids({ amount: { $lt: "5" } })).toEqual(["a", "b"]); // "10" < "5" as strings
      expect(await ids({ amount: { $gt: 5 } })).toEqual(["c"]);
      expect(await ids({ n: { $gt: 1, $lte: 3 } })).toEqual(["b", "c"]);
      expect(await ids({ flag: true })).toEqual(["a"]);
      expect(await ids({ flag: false })).toEqual(["b"]);
      expect(await ids({ pending: { $exists: true } })).toEqual(["a"]);
      expect(await ids({ pending: { $exists: false } })).toEqual(["b", "c"]);
      expect(await ids({ "pending.0": { $exists: true } })).toEqual(["a"]);
      expect(await ids({ "ops.x1": 5 })).toEqual(["b"]);
      // A path into an object whose values are strings: a match or a mismatch, never an error.
      expect(await ids({ "tags.color": "Blue" })).toEqual(["b"]);
      expect(await ids({ "tags.color": "Red" })).toEqual([]);
      expect(await ids({ "wallets.address": "0xA" })).toEqual(["a"]);
      expect(await ids({ "wallets.address": "0xB" })).toEqual([]);
      expect(await ids({ $or: [{ n: 1 }, { live: "L1" }] })).toEqual(["a", "c"]);
      expect(await ids({ name: { $regex: /^(al|ga)/i } })).toEqual(["a", "c"]);
      expect(
        await ids({ $or: [{ name: { $regex: /et/ } }, { key: "c" }], n: { $gte: 2 } }),
      ).toEqual(["b", "c"]);
      expect(await things.count({ live: { $exists: true } })).toBe(1);
      const sorted = await things.find({}, { sort: { n: -1 }, limit: 2 });
      expect(sorted.map(d => d._id)).toEqual(["c", "b"]);
      expect((await things.find({}, { sort: { name: 1 }, offset: 1 })).map(d => d._id)).toEqual([
        "a",
        "b",
      ]);
    });

    it("update operators: $set/$unset dotted, $inc, $push $each, $pull, $addToSet", async () => {
      await things.updateOne({ _id: "b" }, { $set: { "ops.x2": 7 }, $unset: { "ops.x1": true } });
      expect((await things.findOne({ _id: "b" }))?.ops).toEqual({ x2: 7 });
      await things.updateOne({ _id: "b" }, { $inc: { n: 5 } });
      expect((await things.findOne({ _id: "b" }))?.n).toBe(7);
      await things.updateOne({ _id: "b" }, { $push: { pending: { $each: ["q1", "q2", "q3"] } } });
      await things.updateOne({ _id: "b" }, { $pull: { pending: { $in: ["q1", "q3"] } } });
      await things.updateOne({ _id: "b" }, { $push: { pending: { key: "k", n: 1 } } });
      expect((await things.findOne({ _id: "b" }))?.pending).toEqual(["q2", { key: "k", n: 1 }]);
      await things.updateOne({ _id: "b" }, { $pull: { pending: { key: "k" } } });
      await things.updateOne({ _id: "b" }, { $pull: { pending: "q2" } });
      expect((await things.findOne({ _id: "b" }))?.pending).toEqual([]);
      const w = { address: "0xB", chain: "eth" };
      await things.updateOne({ _id: "b" }, { $addToSet: { wallets: w } });
      await things.updateOne({ _id: "b" }, { $addToSet: { wallets: { ...w } } });
      expect((await things.findOne({ "wallets.address": "0xB" }))?.wallets).toEqual([w]);
      await things.updateOne({ _id: "b" }, { $pull: { wallets: { address: "0xB" } } });
      expect((await things.findOne({ _id: "b" }))?.wallets).toEqual([]);
      await things.update({ flag: { $exists: true } }, { $unset: { flag: true } });
      expect(await things.count({ flag: { $exists: true } })).toBe(0);
    });

    it("a unique sparse field: unique among those that have it, any number without", async () => {
      await things.insert({ _id: "d", key: "d" });
      await expect(things.insert({ _id: "e", key: "e", live: "L1" })).rejects.toBeInstanceOf(
        DuplicateKeyError,
      );
      await things.updateOne({ _id: "c" }, { $unset: { live: true } });
      await things.insert({ _id: "e", key: "e", live: "L1" });
      expect((await things.findOne({ live: "L1" }))?._id).toBe("e");
    });

    describe("transactions", () => {
      it("a throw inside rolls back every write of it, in every collection", async () => {
        await accounts.insert({ _id: "acc", balance: 100, version: 0 });
        await expect(
          database.transaction(async tx => {
            await tx
              .store<Account>("accounts")
              .updateOne({ _id: "acc" }, { $inc: { balance: -60 } });
            await tx.store<Thing>("things").insert({ _id: "tx1", key: "tx1" });
            expect((await tx.store<Account>("accounts").findOne({ _id: "acc" }))?.balance).toBe(40);
            throw new Error("changed my mind");
          }),
        ).rejects.toThrow("changed my mind");
        expect((await accounts.findOne({ _id: "acc" }))?.balance).toBe(100);
        expect(await things.findOne({ _id: "tx1" })).toBeNull();
      });

      it("a unique violation inside rolls it back, and the caller hears DuplicateKeyError", async () => {
        await expect(
          database.transaction(async tx => {
            await tx.store<Account>("accounts").updateOne({ _id: "acc" }, { $inc: { balance: 1 } });
            await tx.store<Thing>("things").insert({ _id: "tx2", key: "tx2" });
            await tx.store<Thing>("things").insert({ _id: "tx3", key: "a" });
          }),
        ).rejects.toBeInstanceOf(DuplicateKeyError);
        expect((await accounts.findOne({ _id: "acc" }))?.balance).toBe(100);
        expect(await things.findOne({ _id: "tx2" })).toBeNull();
        // Committed ones resolve to fn's result.
        const r = await database.transaction(async tx => {
          await tx.store<Thing>("things").insert({ _id: "tx4", key: "tx4" });
          return "done";
        });
        expect(r).toBe("done");
        expect(await things.findOne({ _id: "tx4" })).not.toBeNull();
      });

      it("200 concurrent read-modify-write transactions on one account lose no update", async () => {
        await accounts.insert({ _id: "hot", balance: 0, version: 0 });
        const results = await Promise.allSettled(
          Array.from({ length: 200 }, (_, i) =>
            database.transaction(async tx => {
              const acc = tx.store<Account>("accounts");
              const cur = await acc.findOne({ _id: "hot" });
              if (!cur) throw new Error("missing");
              await acc.updateOne({ _id: "hot" }, { $set: { balance: cur.balance + 1 } });
              if (i % 10 === 9) throw new Error("every tenth gives up"); // only these roll back
              return cur.balance;
            }),
          ),
        );
        expect(results.filter(r => r.status === "fulfilled")).toHaveLength(180);
        expect((await accounts.findOne({ _id: "hot" }))?.balance).toBe(180);
      });

      it("a reader polling during a stream of transactions never sees half of one", async () => {
        await accounts.insertMany([
          { _id: "x", balance: 1000, version: 0 },
          { _id: "y", balance: 0, version: 0 },
        ]);
        let stop = false;
        const seen: number[] = [];
        const poll = (async () => {
          while (!stop) {
            const [x, y] = await Promise.all([
              accounts.findOne({ _id: "x" }),
              accounts.findOne({ _id: "y" }),
            ]);
            const both = await accounts.find({ _id: { $in: ["x", "y"] } });
            seen.push(both.reduce((sum, d) => sum + d.balance, 0));
            if (x && y) expect(x.version).toBe(y.version);
            await new Promise(resolve => setImmediate(resolve));
          }
        })();
        for (let round = 0; round < 20; round++)
          await Promise.all(
            Array.from({ length: 10 }, () =>
              database.transaction(async tx => {
                const acc = tx.store<Account>("accounts");
                await acc.updateOne({ _id: "x" }, { $inc: { balance: -1, version: 1 } });
                await new Promise(resolve => setTimeout(resolve, 0)); // the event loop turns meanwhile
                await acc.updateOne({ _id: "y" }, { $inc: { balance: 1, version: 1 } });
              }),
            ),
          );
        stop = true;
        await poll;
        expect(seen.length).toBeGreaterThan(0);
        expect(seen.every(sum => sum === 1000)).toBe(true);
        expect((await accounts.findOne({ _id: "y" }))?.balance).toBe(200);
      });
    });
  });
}

/** Temp dirs of this file, removed when it is done. */
const tempDirs: string[] = [];
const tempDir = (prefix: string): string => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

const sqliteEnv = (DATA_DIR: string) => () => ({ DATA_DIR, MONGO_URI: "" });
contract("sqlite-memory", sqliteEnv(":memory:"));
contract("sqlite-files", sqliteEnv(tempDir("mintmesh-sqlite-")));
if (process.env.MONGO_URI)
  contract("mongodb", () => ({ MONGO_URI: process.env.MONGO_URI as string }));

/** Runs `fn` with the stores as SQLite files under `dataDir`; env as it was afterwards. */
async function withFiles(dataDir: string, fn: () => Promise<void>): Promise<void> {
  const saved = { ...process.env };
  Object.assign(process.env, { DATA_DIR: dataDir, MONGO_URI: "" });
  try {
    await fn();
  } finally {
    process.env = saved;
  }
}

describe("SQLite files keep what was acknowledged", () => {
  it("reloads every acknowledged write after a restart", async () => {
    await withFiles(tempDir("mintmesh-reload-"), async () => {
      const schema: ServiceSchema = {
        name: "reload",
        mixins: [DbMixin({ items: { unique: ["key"] } })],
      };
      const start = async () => {
        const broker = new ServiceBroker({ logger: false });
        const svc = broker.createService(schema) as unknown as DbThis;
        await broker.start();
        return { broker, items: svc.store<Item>("items") };
      };
      const a = await start();
      const writes = Array.from({ length: 200 }, (_, i) =>
        a.items.insert({ _id: `r${i}`, key: `k${i}`, n: 0, version: 0 }),
      );
      await Promise.all(writes);
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          a.items.updateOne({ _id: `r${i}`, version: 0 }, { $set: { n: i, version: 1 } }),
        ),
      );
      await a.items.remove({ _id: "r199" });
      await a.items.insertMany([
        { _id: "many1", key: "many1", n: 7, version: 0 },
        { _id: "many2", key: "many2", n: 8, version: 0 },
      ]);
      // Plain JSON and Dates must read back alike.
      const at = new Date("2026-01-02T03:04:05.678Z");
      const nested = { list: [1, "two", null, { deep: [true] }], text: 'quote " and \\ and \n' };
      await a.items.insert({ _id: "json", key: "json", n: 1, version: 0, ...nested });
      await a.items.insert({ _id: "date", key: "date", n: 2, version: 0, at, nested });
      await a.broker.stop();

      const b = await start();
      expect(await b.items.findOne({ _id: "json" })).toEqual({
        _id: "json",
        key: "json",
        n: 1,
        version: 0,
        ...nested,
      });
      const dated = await b.items.findOne({ _id: "date" });
      expect(dated?.at).toBeInstanceOf(Date);
      expect((dated?.at as Date).toISOString()).toBe(at.toISOString());
      expect(dated?.nested).toEqual(nested);
      expect(await b.items.count({})).toBe(203);
      expect((await b.items.findOne({ _id: "many2" }))?.n).toBe(8);
      expect(await b.items.count({ version: 1 })).toBe(50);
      expect((await b.items.findOne({ _id: "r49" }))?.n).toBe(49);
      await expect(
        b.items.insert({ _id: "x", key: "k1", n: 0, version: 0 }),
      ).rejects.toBeInstanceOf(DuplicateKeyError);
      await b.broker.stop();
    });
  });
});

describe("database per service on MongoDB", () => {
  it("names the database after the URI's and the service's names", () => {
    expect(mongoDbName("mongodb://mongo:27017/mintmesh", "tokens")).toBe("mintmesh-tokens");
    expect(mongoDbName("mongodb://mongo:27017", "users")).toBe("mintmesh-users");
    expect(mongoDbName("mongodb://u:p@a,b,c/prod?replicaSet=rs0", "users")).toBe("prod-users");
  });
});

describe("embedded files are single-writer", () => {
  it("refuses a second broker on the same DATA_DIR, naming MONGO_URI", async () => {
    await withFiles(tempDir("mintmesh-lock-"), async () => {
      const schema: ServiceSchema = { name: "locked", mixins: [DbMixin({ things: {} })] };
      const a = new ServiceBroker({ logger: false });
      a.createService(schema);
      await a.start();
      // A second process is simulated by writing a live foreign pid into the lock.
      const lock = path.join(process.env.DATA_DIR as string, "locked", "LOCK");
      const owner = fs.readFileSync(lock, "utf8");
      expect(owner).toBe(`${process.pid}@${os.hostname()}`);
      fs.writeFileSync(lock, `${process.ppid}@${os.hostname()}`);
      const b = new ServiceBroker({ logger: false });
      b.createService(schema);
      await expect(b.start()).rejects.toThrow(/in use by process .*MONGO_URI/s);
      fs.writeFileSync(lock, owner);
      await a.stop();
      expect(fs.existsSync(lock)).toBe(false);
    });
  });
});

describe("indexes after a failed multi-document update", () => {
  it("every index still answers with the documents as they were", async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { DATA_DIR: ":memory:", MONGO_URI: "" });
    const broker = new ServiceBroker({ logger: false, namespace: "store-indexes" });
    const svc = broker.createService({
      name: "indexes",
      mixins: [DbMixin({ tagged: { unique: ["key"], indexes: ["group"] } })],
    }) as unknown as DbThis;
    await broker.start();
    try {
      const tagged = svc.store<Tagged>("tagged");
      await tagged.insert({ _id: "a", key: "ka", group: "g", n: 1 });
      await tagged.insert({ _id: "b", key: "kb", group: "g", n: 2 });
      // "a" keeps its key, "b" would take it: the store refuses the whole update.
      await expect(tagged.update({ group: "g" }, { $set: { key: "ka", n: 9 } })).rejects.toThrow();
      expect((await tagged.findOne({ key: "ka" }))?.n).toBe(1);
      expect((await tagged.findOne({ key: "kb" }))?.n).toBe(2);
      expect((await tagged.findOne({ _id: "a" }))?.n).toBe(1);
      expect((await tagged.find({ group: "g" }, { sort: { _id: 1 } })).map(d => d.n)).toEqual([
        1, 2,
      ]);
    } finally {
      await broker.stop();
      process.env = saved;
    }
  });
});
