import { afterEach, describe, expect, it, vi } from "vitest";
import {
  MemoryAttemptCounter,
  accountKey,
  clientAddress,
  trustProxyHops,
} from "../../../lib/gateway/rate-limit";

const req = (xff?: string, socket = "10.0.0.1") => ({
  headers: xff === undefined ? {} : { "x-forwarded-for": xff },
  socket: { remoteAddress: socket },
});

describe("lib/rate-limit", () => {
  afterEach(() => vi.useRealTimers());

  it("reads TRUST_PROXY as a count of proxies", () => {
    expect(trustProxyHops(undefined)).toBe(0);
    expect(trustProxyHops("false")).toBe(0);
    expect(trustProxyHops("0")).toBe(0);
    expect(trustProxyHops("true")).toBe(1);
    expect(trustProxyHops("2")).toBe(2);
    expect(() => trustProxyHops("-1")).toThrow(/TRUST_PROXY/);
    expect(() => trustProxyHops("lots")).toThrow(/TRUST_PROXY/);
  });

  it("takes the client address that many hops from the right of X-Forwarded-For", () => {
    const forged = "6.6.6.6, 198.51.100.7, 192.0.2.1";
    expect(clientAddress(req(forged), 0)).toBe("10.0.0.1");
    expect(clientAddress(req(forged), 1)).toBe("192.0.2.1");
    expect(clientAddress(req(forged), 2)).toBe("198.51.100.7");
    // Fewer entries than hops: the farthest one there is.
    expect(clientAddress(req("198.51.100.7"), 3)).toBe("198.51.100.7");
    expect(clientAddress(req(), 1)).toBe("10.0.0.1");
  });

  it("counts attempts per key and window in memory, and forgets a key on reset", async () => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
    const counter = new MemoryAttemptCounter(60_000, 1000);
    expect(await counter.inc("a")).toBe(1);
    expect(await counter.inc("a")).toBe(2);
    expect(await counter.inc("b")).toBe(1);
    await counter.reset("a");
    expect(await counter.inc("a")).toBe(1);
    expect(counter.resetTime).toBe(60_000);
    vi.setSystemTime(60_000);
    expect(await counter.inc("a")).toBe(1);
  });

  it("keys an account by its email, whatever its case and spacing, without the email", () => {
    expect(accountKey(" Ann@Example.com ")).toBe(accountKey("ann@example.com"));
    expect(accountKey("ann@example.com")).not.toMatch(/ann|example/);
  });
});
