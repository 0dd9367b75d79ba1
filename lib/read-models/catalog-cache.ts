/**
 * Cleaning the catalog's cached reads when events change the view. A token's own entry
 * (`catalog.get`) is one key, dropped at once. The list entries (`catalog.list:**`) are
 * a walk over every key of a memory cacher (SCAN on Redis), so that clean runs at most
 * once per window, however many events arrive in it: a list may be this much staler
 * under load.
 *
 * A read that started before an event and stores its result after the event's clean
 * would keep stale data until the TTL; a second clean shortly after closes that window.
 */

/** The cacher's two operations used here (Moleculer's Memory and Redis cachers). */
export interface CacheCleaning {
  del(keys: string | string[]): Promise<unknown>;
  clean(match: string): Promise<unknown>;
}

export interface CatalogCacheSettings {
  /** At most one clean of the list entries per this many ms (CATALOG_CLEAN_WINDOW_MS). */
  cleanWindowMs: number;
  /** The second clean, this many ms after each (CATALOG_RECLEAN_MS). */
  recleanMs: number;
}

interface WarnLogger {
  warn(obj: object, msg: string): void;
}

/** Our own key for one token, so an event can clean exactly that entry. */
export const getCacheKey = (id: string): string => `catalog.get:${id}`;

export class CatalogCacheCleaner {
  /** Tokens changed since the last clean of the list entries. */
  private readonly ids = new Set<string>();
  /** The next clean, when one is waiting for its window. */
  private timer: NodeJS.Timeout | null = null;
  /** Delayed re-cleans, one per clean. */
  private readonly recleans = new Set<NodeJS.Timeout>();
  private lastCleanAt = 0;

  constructor(
    private readonly cacher: CacheCleaning | null | undefined,
    private readonly settings: CatalogCacheSettings,
    private readonly logger: WarnLogger,
  ) {}

  /**
   * Drops the changed tokens' own entries now, and has the list entries cleaned: right
   * away when no clean ran in the last window, else once the window is over.
   */
  async clean(tokenIds: string[]): Promise<void> {
    const cacher = this.cacher;
    if (!cacher) return;
    // Redis refuses DEL without keys.
    if (tokenIds.length > 0) await cacher.del(tokenIds.map(getCacheKey));
    for (const id of tokenIds) this.ids.add(id);
    if (this.timer) return; // the waiting clean will take these too
    const wait = this.lastCleanAt + this.settings.cleanWindowMs - Date.now();
    if (wait <= 0) {
      await this.flush(cacher);
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush(cacher).catch(err => this.logger.warn({ err }, "Catalog cache clean failed"));
    }, wait);
    this.timer.unref();
  }

  /** Forgets the waiting clean and re-cleans: the service is stopping. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const t of this.recleans) clearTimeout(t);
    this.recleans.clear();
  }

  /** One clean of the list entries and the tokens changed since the last, and its re-clean. */
  private async flush(cacher: CacheCleaning): Promise<void> {
    const keys = [...this.ids].map(getCacheKey);
    this.ids.clear();
    this.lastCleanAt = Date.now();
    const clean = async () => {
      await Promise.all([
        cacher.clean("catalog.list:**"),
        keys.length > 0 ? cacher.del(keys) : undefined,
      ]);
    };
    await clean();
    const timer = setTimeout(() => {
      this.recleans.delete(timer);
      clean().catch(err => this.logger.warn({ err }, "Catalog cache clean failed"));
    }, this.settings.recleanMs);
    timer.unref();
    this.recleans.add(timer);
  }
}
