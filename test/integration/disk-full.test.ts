import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type ErrorBody } from "../helpers/http";
import { waitUntil } from "../helpers/cluster";
import { canMountTmpfs, fillDisk, mountTmpfs, unmountTmpfs } from "../helpers/faults";
import {
  allHolders,
  balanceOf,
  createToken,
  sumAmounts,
  type TransferBody,
} from "../helpers/tokens";

/**
 * A full disk under the SQLite files, for real: a small tmpfs is mounted as DATA_DIR and
 * filled during a burst of transfers, then freed. Needs root (to mount); elsewhere the
 * test is skipped with one line saying so.
 */

const isRoot = canMountTmpfs("disk-full test");

describe.skipIf(!isRoot)("a full disk under the stores", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-full-"));
  const filler = path.join(dir, "filler");
  let p: Platform | undefined;

  afterAll(async () => {
    await p?.stop().catch(() => undefined);
    unmountTmpfs(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("answers 503 while it is full, turns readiness 503 naming the store, and recovers without a restart", async () => {
    mountTmpfs(dir, "2m");
    const start = () =>
      startPlatform(["api", "users", "tokens"], {
        env: {
          DATA_DIR: dir,
          RATE_LIMIT_MAX: "0",
          READY_SERVICES: "users,tokens",
        },
      });
    p = await start();
    let client = p.client;
    const alice = await registerUser(client, "alice");
    const bob = await registerUser(client, "bob");
    const token = await createToken(client, alice.token, { initialSupply: "1000000" });

    const send = (key: string, amount: number) =>
      client.post<TransferBody & ErrorBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: bob.id, amount: String(amount) },
        { token: alice.token, headers: { "idempotency-key": key } },
      );

    // A burst in flight while the disk fills up.
    const keys = Array.from({ length: 60 }, (_, i) => `full-${i}`);
    const burst = Promise.all(keys.map((k, i) => send(k, i + 1)));
    fillDisk(filler);
    const first = await burst;
    const later = await Promise.all(keys.map((k, i) => send(`${k}-b`, i + 1)));
    for (const r of [...first, ...later]) {
      expect([201, 503]).toContain(r.status);
      if (r.status === 503) {
        expect(r.body.error.type).toBe("SERVICE_UNAVAILABLE");
        expect(r.headers.get("retry-after")).toBeTruthy();
      }
    }
    expect(later.filter(r => r.status === 503).length).toBeGreaterThan(0);
    const ready = await client.get<{ missing: string[] }>("/health/ready");
    expect(ready.status).toBe(503);
    expect(ready.body.missing.join(" ")).toMatch(/tokens\b.*(ENOSPC|disk is full)/);

    // Room again: writes resume without a restart.
    fs.rmSync(filler);
    await waitUntil(async () => (await client.get("/health/ready")).status === 200, 10_000);
    expect((await send("after", 1)).status).toBe(201);

    // Every key again until its answer is definite: what was acknowledged stays as it was.
    const all = [...keys, ...keys.map(k => `${k}-b`)];
    const acked = new Map<string, string>();
    [...first, ...later].forEach((r, i) => r.status === 201 && acked.set(all[i], r.body.id));
    let moved = 1n; // "after"
    for (const [i, key] of all.entries()) {
      const res = await waitUntil(async () => {
        const r = await send(key, (i % keys.length) + 1);
        // 409 counts only as "abandoned: nothing moved"; "in progress" is asked again.
        const abandoned = r.status === 409 && /new Idempotency-Key/.test(r.body.error?.message);
        return r.status === 201 || abandoned ? r : null;
      }, 15_000);
      if (acked.has(key)) {
        expect(res?.status, key).toBe(201);
        expect(res?.body.id, key).toBe(acked.get(key));
      }
      if (res?.status === 201) moved += BigInt((i % keys.length) + 1);
    }
    expect(await balanceOf(client, token.id, bob.id)).toBe(String(moved));
    expect(sumAmounts(await allHolders(client, token.id))).toBe(1000000n);

    // What the node answered is what its files hold: a restart reads the same ledger.
    await p.stop();
    p = await start();
    client = p.client;
    expect(await balanceOf(client, token.id, bob.id)).toBe(String(moved));
    expect(sumAmounts(await allHolders(client, token.id))).toBe(1000000n);
    for (const [key, id] of acked) {
      const i = all.indexOf(key);
      expect((await send(key, (i % keys.length) + 1)).body.id, key).toBe(id);
    }
  });
});
