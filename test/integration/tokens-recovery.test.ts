import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser } from "../helpers/http";
import { waitUntil } from "../helpers/cluster";
import { balanceOf, createToken, type TransferBody } from "../helpers/tokens";
import type { Store } from "../../lib/store/store";

/**
 * The outbox deletes an event once it is published, so after a restart the journal
 * and the balances' markers alone must tell a finished transfer from one that never
 * moved anything. Here a transfer finishes and its event goes out, but its journal
 * entry stays `pending` (the write that marks it done fails); the process then stops
 * and starts again on the same files.
 */

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-recovery-"));
const env = { DATA_DIR: dataDir, READY_SERVICES: "users,tokens", RATE_LIMIT_MAX: "0" };
let p: Platform | undefined;

afterAll(async () => {
  await p?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe("tokens recovery after the outbox let go of a finished transfer's event", () => {
  it("keeps the transfer: the retry with its key gets it back and nothing moves twice", async () => {
    p = await startPlatform(["api", "users", "tokens"], env);
    const alice = await registerUser(p.client, "alice");
    const bob = await registerUser(p.client, "bob");
    const token = await createToken(p.client, alice.token, { initialSupply: "1000" });

    const tokens = p.broker.getLocalService("tokens") as unknown as {
      stores: Record<string, Store>;
    };
    const journal = tokens.stores.journal;
    const realUpdate = journal.update.bind(journal);
    journal.update = async (query, update) => {
      const set = (update as { $set?: { state?: string } }).$set;
      if (set?.state === "done") throw new Error("test: the done write fails");
      return realUpdate(query, update);
    };

    const send = (amount: string, key: string) =>
      p!.client.post<TransferBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: bob.id, amount },
        { token: alice.token, headers: { "idempotency-key": key } },
      );
    const first = await send("100", "recovery-1");
    expect(first.status).toBe(201);
    await waitUntil(
      async () => (await p!.broker.call<{ unsent: number }>("tokens.outboxStats")).unsent === 0,
      5000,
    );
    // Writes both balances again, which drops the markers of transfers known to be done.
    expect((await send("1", "recovery-2")).status).toBe(201);
    await p.stop();

    p = await startPlatform(["api", "users", "tokens"], env);
    const retried = await send("100", "recovery-1");
    expect(retried.status).toBe(201);
    expect(retried.body.id).toBe(first.body.id);
    expect(await balanceOf(p.client, token.id, alice.id)).toBe("899");
    expect(await balanceOf(p.client, token.id, bob.id)).toBe("101");
    // Both transfers' events went out again (consumers dedupe by eventId).
    const stats = await waitUntil(async () => {
      const s = await p!.broker.call<{ unsent: number; published: number }>("tokens.outboxStats");
      return s.unsent === 0 ? s : null;
    }, 5000);
    expect(stats?.published).toBe(2);
  });
});
