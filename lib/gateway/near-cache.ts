import { Lru, jsonSize } from "../shared/lru";

/**
 * The gateway's own copy of the catalog's answers (middlewares/near-cache.middleware.ts).
 * A GET /api/tokens/:id served from here costs no NATS round trip and no Redis read: with
 * them the gateway did a third of what a trivial remote call does (docs/benchmarks.md).
 *
 * Kept fresh by the events: the catalog broadcasts `catalog.changed` with the tokens of
 * every batch it applies; their entries go, and so does every page of the list. A read
 * that began before such an event does not store what it got (it may predate the change),
 * and for `quietMs` after it nothing of a changed token (or any page) is stored: the
 * catalog's own cache may still hold a read that raced the change until its second clean
 * (CATALOG_RECLEAN_MS). Whatever is missed (a gateway cut off from NATS) lives at most
 * `ttlMs`. Bounded in entries and in JSON size (docs/architecture.md rule 10).
 */
export interface NearCacheOptions {
  /** How long an answer may be served; 0 turns the cache off. */
  ttlMs: number;
  maxEntries: number;
  /** Characters of JSON of all answers kept. */
  maxBytes: number;
  /** How long after a change its token's (and the pages') answers are not stored. */
  quietMs?: number;
}

export class NearCache {
  private readonly tokens: Lru<string, unknown>;
  private readonly lists: Lru<string, unknown>;
  /** Moves at every change: a read that saw another generation at its start stores nothing. */
  private generation = 0;
  /** Tokens changed in the last quietMs, and when a page last could have. */
  private readonly recent: Lru<string, true>;
  private listsChangedAt = 0;
  private readonly quietMs: number;

  constructor(readonly opts: NearCacheOptions) {
    const half = {
      maxEntries: Math.max(1, Math.ceil(opts.maxEntries / 2)),
      maxSize: Math.max(1, Math.floor(opts.maxBytes / 2)),
      sizeOf: jsonSize,
      ttlMs: opts.ttlMs,
    };
    this.tokens = new Lru(half);
    this.lists = new Lru(half);
    this.quietMs = opts.quietMs ?? 500;
    this.recent = new Lru({ maxEntries: 10_000, ttlMs: Math.max(1, this.quietMs) });
  }

  get enabled(): boolean {
    return this.opts.ttlMs > 0;
  }

  /** What a read starting now must hand back to `store`. */
  begin(): number {
    return this.generation;
  }

  getToken(id: string): unknown {
    return this.tokens.get(id);
  }

  getList(key: string): unknown {
    return this.lists.get(key);
  }

  storeToken(id: string, value: unknown, began: number): void {
    if (began === this.generation && !this.recent.has(id)) this.tokens.set(id, value);
  }

  storeList(key: string, value: unknown, began: number): void {
    const quiet = Date.now() - this.listsChangedAt >= this.quietMs;
    if (began === this.generation && quiet) this.lists.set(key, value);
  }

  /** These tokens changed: their entries and every page go. */
  changed(tokenIds: readonly string[]): void {
    this.generation++;
    for (const id of tokenIds) {
      this.tokens.delete(id);
      if (this.quietMs > 0) this.recent.set(id, true);
    }
    this.listsChangedAt = Date.now();
    this.lists.clear();
  }
}
