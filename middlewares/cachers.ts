import { Cachers } from "moleculer";
import { Lru, jsonSize } from "../lib/shared/lru";

/**
 * The broker's cachers (moleculer.config.ts). Moleculer's Memory cacher has no bound and
 * its MemoryLRU cacher bounds only the count of entries, while one catalog page may be
 * 200 KB; and Moleculer's cache middleware does not wait for or catch a write, so a Redis
 * that refuses one was an unhandled rejection, which ends a Node 22 process.
 */

export interface BoundedMemoryCacherOptions {
  /** Default time to live of an entry (s). */
  ttl: number;
  /** At most this many entries (CACHE_MAX_ENTRIES). */
  max: number;
  /** At most this many characters of JSON in all (CACHE_MAX_BYTES); larger answers are not kept. */
  maxSize: number;
  clone?: boolean;
}

/** What MemoryLRU calls on its `cache` (an lru-cache): these six; size and values for a look inside. */
interface LruCacheCalls {
  readonly size: number;
  values(): IterableIterator<unknown>;
  has(key: string): boolean;
  get(key: string): unknown;
  set(key: string, value: unknown, opts?: { ttl?: number }): unknown;
  delete(key: string): boolean;
  keys(): IterableIterator<string>;
  purgeStale(): void;
}

/**
 * Moleculer's MemoryLRU cacher over an Lru bounded in entries and in JSON size, oldest
 * dropped first. Entries expire at their TTL; reading one does not extend it.
 */
export class BoundedMemoryCacher extends Cachers.MemoryLRU {
  readonly entries: Lru<string, unknown>;

  constructor(opts: BoundedMemoryCacherOptions) {
    super(opts);
    const lru = new Lru<string, unknown>({
      maxEntries: opts.max,
      maxSize: opts.maxSize,
      sizeOf: jsonSize,
    });
    this.entries = lru;
    const calls: LruCacheCalls = {
      get size() {
        return lru.size;
      },
      values: () => lru.values(),
      has: key => lru.has(key),
      get: key => lru.get(key),
      set: (key, value, o) => lru.set(key, value, { ttlMs: o?.ttl ?? 0 }),
      delete: key => lru.delete(key),
      keys: () => lru.keys(),
      purgeStale: () => lru.purgeStale(),
    };
    // MemoryLRU's typings do not declare its `cache` field, which this replaces.
    (this as unknown as { cache: LruCacheCalls }).cache = calls;
  }
}

/** Moleculer's Redis cacher whose writes never reject: a failed one is logged and skipped. */
export class SafeRedisCacher extends Cachers.Redis {
  override async set(key: string, data: unknown, ttl?: number): Promise<void> {
    try {
      await super.set(key, data, ttl);
    } catch (err) {
      // The message only: a Redis error carries the command, and with it the value.
      this.logger.warn({ key, error: (err as Error).message }, "Cache write failed; not kept");
    }
  }
}

/**
 * Whether the broker's cacher is a Redis cacher without a live connection (readiness says
 * "redis"): ioredis reconnects by itself, and until then every cached action waits on it.
 */
export function redisCacherDown(cacher: unknown): boolean {
  if (!(cacher instanceof Cachers.Redis)) return false;
  const client = (cacher as Cachers.Redis<{ status?: string } | undefined>).client;
  return client?.status !== "ready";
}
