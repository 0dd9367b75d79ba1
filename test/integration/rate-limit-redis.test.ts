import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { RedisRateLimitStore } from "../../lib/gateway/rate-limit";

/**
 * The API's rate limit counted in Redis by several gateways (lib/gateway/rate-limit.ts): hits go
 * to Redis in batches, and every gateway learns the others' hits at its next sync.
 */

const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const stores: RedisRateLimitStore[] = [];
const gateway = (prefix: string, syncMs: number) => {
  const s = new RedisRateLimitStore(60_000, { redisUrl: REDIS_URL, prefix, syncMs });
  stores.push(s);
  return s;
};
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

afterEach(async () => {
  await Promise.all(stores.splice(0).map(s => s.close()));
});

describe("rate-limit counters shared in Redis", () => {
  it("batches a gateway's hits and shows each gateway the others' after a sync", async () => {
    const prefix = `rl-${randomBytes(4).toString("hex")}`;
    const a = gateway(prefix, 50);
    const b = gateway(prefix, 50);
    // Counted here at once, without waiting for Redis.
    for (let i = 1; i <= 5; i++) expect(await a.inc("10.0.0.1")).toBe(i);
    await sleep(200);
    // b has not synced yet: its first hit counts 1 until it has; then it knows all six.
    expect(await b.inc("10.0.0.1")).toBe(1);
    await sleep(200);
    expect(await b.inc("10.0.0.1")).toBe(7);
    // a learns the total with the answer to its own next sync.
    expect(await a.inc("10.0.0.1")).toBe(6);
    await sleep(200);
    expect(await a.inc("10.0.0.1")).toBe(9);
    // Another client's count is its own.
    expect(await a.inc("10.0.0.2")).toBe(1);
  });

  it("keeps counting the hits of a sync under way until Redis's totals arrive", async () => {
    const prefix = `rl-${randomBytes(4).toString("hex")}`;
    const a = gateway(prefix, 60_000);
    expect(await a.inc("10.0.0.1")).toBe(1);
    expect(await a.inc("10.0.0.1")).toBe(2);
    // A hit while the sync's MULTI is out counts the two it is sending (it once counted 1:
    // remaining went up, then down again, in the gateway's headers).
    const sync = (a as unknown as { sync(): Promise<void> }).sync();
    expect(await a.inc("10.0.0.1")).toBe(3);
    expect(await a.peek("10.0.0.1")).toBe(3);
    await sync;
    expect(await a.inc("10.0.0.1")).toBe(4);
  });

  it("counts every hit in Redis at once without a sync interval (the login limits)", async () => {
    const prefix = `rl-${randomBytes(4).toString("hex")}`;
    const a = gateway(prefix, 0);
    const b = gateway(prefix, 0);
    expect(await a.inc("acct")).toBe(1);
    expect(await b.inc("acct")).toBe(2);
    expect(await a.inc("acct")).toBe(3);
    await b.reset("acct");
    expect(await a.inc("acct")).toBe(1);
  });

  it("sends what is still counted locally when it closes", async () => {
    const prefix = `rl-${randomBytes(4).toString("hex")}`;
    const a = new RedisRateLimitStore(60_000, { redisUrl: REDIS_URL, prefix, syncMs: 10_000 });
    for (let i = 0; i < 3; i++) await a.inc("10.0.0.3");
    await a.close();
    const b = gateway(prefix, 0);
    expect(await b.inc("10.0.0.3")).toBe(4);
  });
});
