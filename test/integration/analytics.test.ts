import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AnalyticsSummary } from "../../lib/read-models/read-model";
import type { Service } from "moleculer";
import type { DbMethods, DbVars } from "../../mixins/db.mixin";
import { failInTransaction } from "../helpers/stores";
import { TokenScript, sendAll, sendToChannel } from "../helpers/channels";
import { waitUntil } from "../helpers/cluster";
import { registerUser } from "../helpers/http";
import { startPlatform, type Platform } from "../helpers/platform";
import { analyticsSummary } from "../helpers/analytics";

/**
 * GET /api/analytics/summary over counters the analytics consumer group keeps, fed by
 * events on the real in-memory channel adapter, with duplicates and a restart on the
 * same data files.
 */

const BIG = "340282366920938463463374607431768211455"; // 2^128 − 1: far past a float's precision

describe("analytics: GET /api/analytics/summary", () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-analytics-"));
  const env = { READY_SERVICES: "users,analytics", ANALYTICS_CACHE_TTL: "0" };
  const savedDataDir = process.env.DATA_DIR;
  let p: Platform;
  let token: string;

  beforeAll(async () => {
    // DbMixin reads DATA_DIR when the service starts, after startPlatform has put the
    // env back; files (not memory) are what makes the restart below meaningful.
    process.env.DATA_DIR = dataDir;
    p = await startPlatform(["api", "users", "analytics"], env);
    token = (await registerUser(p.client, "analyst")).token;
  });
  afterAll(async () => {
    await p?.stop();
    process.env.DATA_DIR = savedDataDir;
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const summary = async () => {
    const res = await p.client.get<AnalyticsSummary>("/api/analytics/summary", { token });
    expect(res.status).toBe(200);
    return res.body;
  };

  /**
   * Waits until everything sent before is counted: a probe token is created and deleted
   * (no trace in the summary), and events are applied in batches in the order they
   * arrive, so once the probe's last event is recorded as applied, so is all before it.
   */
  async function settle(): Promise<AnalyticsSummary> {
    const probe = new TokenScript({ creatorId: "probe" });
    const last = probe.deleted();
    await sendAll(p.broker, [probe.created(), last]);
    const svc = p.broker.getLocalService("analytics") as Service & DbMethods;
    await waitUntil(
      async () => (await svc.store("applied").count({ _id: last.eventId })) === 1,
      5000,
    );
    return summary();
  }

  it("needs a signed-in user", async () => {
    const res = await p.client.get("/api/analytics/summary");
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ error: { type: "UNAUTHORIZED" } });
  });

  it("starts at zero", async () => {
    expect(await summary()).toEqual(analyticsSummary());
  });

  it("counts tokens, transfers and exact volume, each event once however often it arrives", async () => {
    const a = new TokenScript({ creatorId: "alice", totalSupply: "1" + "0".repeat(60) });
    const b = new TokenScript({ creatorId: "bob", totalSupply: "1000" });
    const events = [
      a.created(),
      b.created(),
      a.transfer("alice", "bob", BIG),
      a.transfer("alice", "carol", BIG),
      a.transfer("alice", "carol", "1"),
      b.transfer("bob", "alice", "7"),
      b.transfer("bob", "bob", "0"),
    ];
    await sendAll(p.broker, events);
    await sendAll(p.broker, [...events].reverse()); // every one redelivered

    await waitUntil(async () => (await summary()).transfers === 5, 5000);
    const s = await settle();
    expect(s).toEqual(
      analyticsSummary({
        tokens: 2,
        transfers: 5,
        volumeByToken: {
          [a.token.id]: (2n * BigInt(BIG) + 1n).toString(),
          [b.token.id]: "7",
        },
      }),
    );
  });

  it("stops counting a deleted token but keeps its transfer history", async () => {
    const before = await summary();
    const c = new TokenScript({ creatorId: "carol", totalSupply: "5" });
    await sendAll(p.broker, [c.created(), c.transfer("carol", "dave", "2")]);
    await waitUntil(async () => (await summary()).transfers === before.transfers + 1, 5000);
    await sendToChannel(p.broker, c.deleted());
    await sendToChannel(p.broker, c.deleted());
    const s = await settle();
    expect(s.tokens).toBe(before.tokens);
    expect(s.transfers).toBe(before.transfers + 1);
    expect(s.volumeByToken[c.token.id]).toBe("2");
  });

  it("counts nothing of an event whose batch crashed before recording it, and its redelivery once", async () => {
    const e = new TokenScript({ creatorId: "erin", totalSupply: "9" });
    await sendAll(p.broker, [e.created()]);
    await waitUntil(async () => (await summary()).tokens > 0, 5000);
    const before = await settle();
    const move = e.transfer("erin", "gina", "4");

    // Dies at the record of its eventId, after the counters were written in its transaction.
    const svc = p.broker.getLocalService("analytics") as Service & DbMethods & DbVars;
    const crash = failInTransaction(svc.database, "applied", "insertMany");
    await sendToChannel(p.broker, move);
    await waitUntil(async () => crash.fired(), 5000);
    expect(await svc.store("applied").count({ _id: move.eventId })).toBe(0);

    await sendAll(p.broker, [move, move]); // the redeliveries
    await waitUntil(async () => (await summary()).volumeByToken[e.token.id] === "4", 5000);
    const after = await settle();
    expect(after.transfers).toBe(before.transfers + 1);
    expect(await svc.store("applied").count({ _id: move.eventId })).toBe(1);
  });

  it("keeps its counts across a restart and does not count redelivered events again", async () => {
    const d = new TokenScript({ creatorId: "dave", totalSupply: "100" });
    const history = [
      d.created(),
      d.transfer("dave", "erin", "10"),
      d.transfer("erin", "dave", "3"),
    ];
    await sendAll(p.broker, history);
    await waitUntil(async () => (await summary()).volumeByToken[d.token.id] === "13", 5000);
    const before = await settle();

    await p.stop();
    p = await startPlatform(["api", "users", "analytics"], env);
    token = (await registerUser(p.client, "analyst")).token;
    expect(await summary()).toEqual(before);

    // An outbox relay that died before marking these sent publishes them again.
    await sendAll(p.broker, history);
    const fresh = d.transfer("dave", "frank", "1");
    await sendToChannel(p.broker, fresh);
    await waitUntil(async () => (await summary()).transfers === before.transfers + 1, 5000);
    const after = await settle();
    expect(after).toEqual({
      ...before,
      transfers: before.transfers + 1,
      volumeByToken: { ...before.volumeByToken, [d.token.id]: "14" },
      salesVolumeByToken: {},
    });
  });
});
