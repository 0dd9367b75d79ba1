import { describe, expect, it } from "vitest";
import {
  DEFAULT_SCHEDULE,
  maxAttempts,
  minimumSpanMs,
  nextDelayMs,
  parseRetryAfter,
  scheduleFromEnv,
} from "../../../lib/webhooks/schedule";

describe("lib/webhooks/schedule", () => {
  it("retries for at least 24 hours, with growing waits", () => {
    expect(minimumSpanMs(DEFAULT_SCHEDULE)).toBeGreaterThanOrEqual(24 * 3600_000);
    const d = DEFAULT_SCHEDULE.delaysMs;
    for (let i = 1; i < d.length; i++) expect(d[i]).toBeGreaterThanOrEqual(d[i - 1]);
    // Every wait at its low end, the whole run still spans the day.
    let total = 0;
    for (let n = 1; ; n++) {
      const w = nextDelayMs(DEFAULT_SCHEDULE, n, null, () => 0);
      if (w === null) break;
      total += w;
    }
    expect(total).toBeGreaterThanOrEqual(24 * 3600_000);
  });

  it("jitters each wait within ±20 %", () => {
    expect(nextDelayMs(DEFAULT_SCHEDULE, 1, null, () => 0)).toBe(4000);
    expect(nextDelayMs(DEFAULT_SCHEDULE, 1, null, () => 1)).toBe(6000);
    const seen = new Set(Array.from({ length: 20 }, () => nextDelayMs(DEFAULT_SCHEDULE, 3)));
    expect(seen.size).toBeGreaterThan(1);
  });

  it("ends after the last wait", () => {
    const n = maxAttempts(DEFAULT_SCHEDULE);
    expect(nextDelayMs(DEFAULT_SCHEDULE, n - 1)).not.toBeNull();
    expect(nextDelayMs(DEFAULT_SCHEDULE, n)).toBeNull();
  });

  it("honours Retry-After as a floor, up to its cap", () => {
    const mid = () => 0.5;
    expect(nextDelayMs(DEFAULT_SCHEDULE, 1, 120_000, mid)).toBe(120_000);
    expect(nextDelayMs(DEFAULT_SCHEDULE, 1, 1000, mid)).toBe(5000);
    expect(nextDelayMs(DEFAULT_SCHEDULE, 1, 10 * 24 * 3600_000, mid)).toBe(8 * 3600_000);
  });

  it("reads Retry-After as seconds or as a date", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeNull();
    expect(parseRetryAfter(undefined, now)).toBeNull();
  });

  it("takes a shorter schedule from env (tests)", () => {
    expect(scheduleFromEnv("100, 200").delaysMs).toEqual([100, 200]);
    expect(scheduleFromEnv(undefined)).toEqual(DEFAULT_SCHEDULE);
    expect(() => scheduleFromEnv("1,x")).toThrow("WEBHOOKS_RETRY_DELAYS_MS");
  });
});
