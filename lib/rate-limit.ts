import Redis from "ioredis";

/**
 * A moleculer-web rate-limit store kept in Redis, so that every gateway counts the
 * same hits. Windows are fixed and aligned to the epoch: all gateways agree on when
 * a window ends without talking to each other.
 */
export class RedisRateLimitStore {
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(
    private readonly windowMs: number,
    opts: { redisUrl: string; prefix: string },
  ) {
    this.redis = new Redis(opts.redisUrl, {
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      lazyConnect: false,
    });
    this.prefix = opts.prefix;
  }

  get resetTime(): number {
    return (Math.floor(Date.now() / this.windowMs) + 1) * this.windowMs;
  }

  async inc(key: string): Promise<number> {
    const window = Math.floor(Date.now() / this.windowMs);
    const k = `${this.prefix}:${window}:${key}`;
    const res = await this.redis.multi().incr(k).pexpire(k, this.windowMs).exec();
    const count = res?.[0]?.[1];
    if (typeof count !== "number") throw new Error("Rate limit store did not answer");
    return count;
  }

  async ping(): Promise<boolean> {
    return (await this.redis.ping()) === "PONG";
  }

  async close(): Promise<void> {
    await this.redis.quit();
  }
}

/** Seconds until a rate-limit window ends, for Retry-After. */
export function retryAfterSeconds(resetTime: number, now = Date.now()): number {
  return Math.max(1, Math.ceil((resetTime - now) / 1000));
}
