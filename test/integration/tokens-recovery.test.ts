import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser } from "../helpers/http";
import { waitUntil } from "../helpers/cluster";
import { balanceOf, createToken, type TransferBody } from "../helpers/tokens";

/**
 * A transfer is one transaction of the tokens database: once acknowledged it is on disk
 * whole, with its journal entry and its event. Here a transfer finishes and its event
 * goes out; the process then stops and starts again on the same files, and the retry of
 * its key answers that transfer without moving anything or sending its event again.
 */

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-recovery-"));
const env = { DATA_DIR: dataDir, READY_SERVICES: "users,tokens", RATE_LIMIT_MAX: "0" };
let p: Platform | undefined;

afterAll(async () => {
  await p?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const outboxStats = () =>
  p!.broker.call<{ unsent: number; published: number }>("tokens.outboxStats");

describe("tokens after a restart on the same files", () => {
  it("keeps the transfer: the retry with its key gets it back and nothing moves twice", async () => {
    p = await startPlatform(["api", "users", "tokens"], env);
    const alice = await registerUser(p.client, "alice");
    const bob = await registerUser(p.client, "bob");
    const token = await createToken(p.client, alice.token, { initialSupply: "1000" });
    const send = (amount: string, key: string) =>
      p!.client.post<TransferBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: bob.id, amount },
        { token: alice.token, headers: { "idempotency-key": key } },
      );
    const first = await send("100", "recovery-1");
    expect(first.status).toBe(201);
    await waitUntil(async () => (await outboxStats()).unsent === 0, 5000);
    await p.stop();

    p = await startPlatform(["api", "users", "tokens"], env);
    const retried = await send("100", "recovery-1");
    expect(retried.status).toBe(201);
    expect(retried.body).toEqual(first.body);
    expect(await balanceOf(p.client, token.id, alice.id)).toBe("900");
    expect(await balanceOf(p.client, token.id, bob.id)).toBe("100");
    // Sent before the restart, so not again: nothing of it was left in the outbox.
    expect(await outboxStats()).toEqual({ unsent: 0, published: 0 });
  });
});
