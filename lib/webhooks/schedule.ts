/**
 * When a failed delivery is tried again (docs/api.md "Webhooks"): after growing delays,
 * each with ±20 % jitter so the retries of many deliveries that failed together (an
 * endpoint that was down) spread out, covering at least a day; then it is `failed`.
 * A 429 or 503 with `Retry-After` is tried again no sooner than it asks, up to a cap.
 */

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** The wait after the 1st, 2nd, … failed attempt: about 31 h of retries in 15 attempts. */
export const DEFAULT_DELAYS_MS: readonly number[] = [
  5 * SECOND,
  30 * SECOND,
  2 * MINUTE,
  10 * MINUTE,
  30 * MINUTE,
  1 * HOUR,
  2 * HOUR,
  4 * HOUR,
  8 * HOUR,
  8 * HOUR,
  8 * HOUR,
];

export interface RetrySchedule {
  /** The waits, in order; the last attempt is the one after the last wait. */
  delaysMs: readonly number[];
  /** ± this share of each wait, at random (0.2: ±20 %). */
  jitter: number;
  /** The longest a Retry-After may hold a delivery back. */
  maxRetryAfterMs: number;
}

export const DEFAULT_SCHEDULE: RetrySchedule = {
  delaysMs: DEFAULT_DELAYS_MS,
  jitter: 0.2,
  maxRetryAfterMs: 8 * HOUR,
};

/** How many attempts a delivery gets in all. */
export const maxAttempts = (s: RetrySchedule): number => s.delaysMs.length + 1;

/** The least time the schedule retries for (every wait at its jitter's low end). */
export const minimumSpanMs = (s: RetrySchedule): number =>
  s.delaysMs.reduce((sum, d) => sum + d * (1 - s.jitter), 0);

/**
 * The wait after failed attempt number `attempts` (1-based), or null when that was the
 * last. `retryAfterMs` (from the answer) is a floor, capped by maxRetryAfterMs.
 */
export function nextDelayMs(
  s: RetrySchedule,
  attempts: number,
  retryAfterMs: number | null = null,
  random: () => number = Math.random,
): number | null {
  if (attempts >= maxAttempts(s)) return null;
  const base = s.delaysMs[attempts - 1];
  const jittered = Math.round(base * (1 + s.jitter * (2 * random() - 1)));
  if (retryAfterMs === null) return jittered;
  return Math.max(jittered, Math.min(retryAfterMs, s.maxRetryAfterMs));
}

/** Retry-After in ms (delta-seconds or an HTTP date); null when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, nowMs = Date.now()): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * SECOND;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - nowMs);
}

/**
 * A schedule from WEBHOOKS_RETRY_DELAYS_MS ("100,200,400": tests shrink the day to
 * moments), else the default.
 */
export function scheduleFromEnv(raw: string | undefined, maxRetryAfterMs?: number): RetrySchedule {
  const delays = (raw ?? "")
    .split(",")
    .map(s => s.trim())
    .filter(Boolean)
    .map(Number);
  if (delays.some(d => !Number.isFinite(d) || d < 0))
    throw new Error(`WEBHOOKS_RETRY_DELAYS_MS must be a list of milliseconds, not "${raw}"`);
  return {
    ...DEFAULT_SCHEDULE,
    ...(delays.length > 0 ? { delaysMs: delays } : {}),
    ...(maxRetryAfterMs !== undefined ? { maxRetryAfterMs } : {}),
  };
}
