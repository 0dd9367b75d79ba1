import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SqliteDatabase } from "../../lib/store/sqlite/sqlite-database";
import { ROOT } from "../helpers/cluster";

/**
 * Real processes on one DATA_DIR, from the compiled code (`npm test` builds first): a
 * writer SIGKILLed in the middle of its appends, and processes racing for the lock.
 */

const dist = (file: string) => JSON.stringify(path.join(ROOT, "dist/lib", file));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-files-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function run(script: string) {
  const proc = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout.on("data", b => (out += b));
  proc.stderr.on("data", b => (out += b));
  const exited = new Promise<number | null>(resolve => proc.once("exit", code => resolve(code)));
  return { proc, exited, output: () => out };
}

describe("a SQLite writer SIGKILLed in a stream of transactions", () => {
  it("reopens with every transaction it acknowledged, and none in half", async () => {
    const filename = path.join(tmp, "stream.sqlite");
    // Each transaction moves one unit between two accounts and records its id: all or none of it.
    const writer = run(`
      const { SqliteDatabase } = require(${dist("store/sqlite/sqlite-database.js")});
      const db = SqliteDatabase.open({ accounts: {}, moves: { unique: ["seq"] } },
        { filename: ${JSON.stringify(filename)} });
      (async () => {
        await db.store("accounts").insertMany([
          { _id: "a", balance: 1000000 }, { _id: "b", balance: 0 }]);
        for (let i = 0; ; i += 25) {
          await Promise.all(Array.from({ length: 25 }, (_, k) => db.transaction(async tx => {
            await tx.store("accounts").updateOne({ _id: "a" }, { $inc: { balance: -1 } });
            await tx.store("moves").insert({ _id: "m" + (i + k), seq: i + k, pad: "x".repeat(200) });
            await tx.store("accounts").updateOne({ _id: "b" }, { $inc: { balance: 1 } });
          }).then(() => process.stdout.write("ACK m" + (i + k) + "\\n"))));
        }
      })();`);
    for (let i = 0; i < 400 && (writer.output().match(/ACK/g) ?? []).length < 2000; i++)
      await new Promise(r => setTimeout(r, 10));
    writer.proc.kill("SIGKILL");
    await writer.exited;
    const acked = [...writer.output().matchAll(/ACK (m\d+)/g)].map(m => m[1]!);
    expect(acked.length).toBeGreaterThanOrEqual(500);

    const db = SqliteDatabase.open({ accounts: {}, moves: { unique: ["seq"] } }, { filename });
    const moves = db.store("moves");
    const found = new Set((await moves.find({})).map(d => d._id));
    for (const id of acked) expect(found.has(id), id).toBe(true);
    const [a, b] = await Promise.all([
      db.store<{ _id: string; balance: number }>("accounts").findOne({ _id: "a" }),
      db.store<{ _id: string; balance: number }>("accounts").findOne({ _id: "b" }),
    ]);
    // No half transaction: both accounts moved exactly as many times as there are moves.
    expect(b?.balance).toBe(found.size);
    expect(a?.balance).toBe(1000000 - found.size);
    await db.close();
  });
});

describe("processes racing for one DATA_DIR's lock", () => {
  /** All start at `goAt` (a busy wait after loading), so their attempts meet. */
  const race = (dir: string, holdMs: number, goAt = 0) =>
    run(`
      const { lockDataDir } = require(${dist("store/data-dir-lock.js")});
      while (Date.now() < ${goAt});
      lockDataDir(${JSON.stringify(dir)}, "tokens").then(
        release => { console.log("LOCKED"); setTimeout(() => { release(); process.exit(0); }, ${holdMs}); },
        err => { console.log("REFUSED " + err.message); process.exit(3); });`);

  it("lets exactly one of six win, every time, also over a lock left by a SIGKILLed holder", async () => {
    const dir = path.join(tmp, "race");
    fs.mkdirSync(dir);
    for (let round = 0; round < 8; round++) {
      const goAt = Date.now() + 700;
      const racers = Array.from({ length: 6 }, () => race(dir, 400, goAt));
      if (round % 2 === 1) {
        // The winner dies without releasing: its LOCK file stays behind.
        await new Promise(r => setTimeout(r, 950));
        const winner = racers.find(r => r.output().includes("LOCKED"));
        winner?.proc.kill("SIGKILL");
      }
      const codes = await Promise.all(racers.map(r => r.exited));
      const won = racers.filter(r => r.output().includes("LOCKED"));
      expect(won.length, `round ${round}: ${racers.map(r => r.output()).join(" | ")}`).toBe(1);
      expect(codes.filter(c => c === 3).length, `round ${round}`).toBe(5);
      for (const r of racers.filter(r => !r.output().includes("LOCKED")))
        expect(r.output()).toMatch(/in use by .*MONGO_URI/s);
    }
  });

  it("never takes over a lock written by another host", async () => {
    const dir = path.join(tmp, "foreign");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "LOCK"), "4242@some-other-host");
    const r = race(dir, 0);
    expect(await r.exited).toBe(3);
    expect(r.output()).toContain("in use by process 4242 on some-other-host");
  });
});
