/**
 * A least-recently-used map bounded by entry count and, when given a size function, by
 * the total size of its values (docs/architecture.md rule 10: whatever a client can make us keep has a
 * bound in bytes, not only in entries, since one entry may be a 200 KB page). Entries may
 * carry a time to live; an expired entry reads as absent and is dropped when seen.
 */
export interface LruOptions<V> {
  /** At most this many entries. */
  maxEntries: number;
  /** At most this total of sizeOf(value); a value larger than this alone is not kept. */
  maxSize?: number;
  /** The size of a value in the unit of maxSize (default: 1 per entry). */
  sizeOf?: (value: V) => number;
  /** Default time to live of an entry (ms); 0 or absent: none. */
  ttlMs?: number;
}

interface Slot<V> {
  value: V;
  size: number;
  /** Epoch ms after which the entry is gone; 0: never. */
  expiresAt: number;
}

export class Lru<K, V> {
  private readonly map = new Map<K, Slot<V>>();
  private total = 0;

  constructor(private readonly opts: LruOptions<V>) {
    if (!(opts.maxEntries > 0)) throw new Error("Lru needs maxEntries > 0");
  }

  /** Entries held (expired ones not yet seen included). */
  get size(): number {
    return this.map.size;
  }

  /** The total size of the values held, in the unit of maxSize. */
  get totalSize(): number {
    return this.total;
  }

  has(key: K): boolean {
    return this.live(key) !== undefined;
  }

  /** The value, made the most recently used; undefined when absent or expired. */
  get(key: K): V | undefined {
    const slot = this.live(key);
    if (!slot) return undefined;
    this.map.delete(key);
    this.map.set(key, slot);
    return slot.value;
  }

  /** Keeps `value` (ttlMs: this entry's own time to live, 0 for none). False when too large. */
  set(key: K, value: V, opts: { ttlMs?: number } = {}): boolean {
    this.delete(key);
    const size = this.opts.sizeOf ? this.opts.sizeOf(value) : 1;
    const max = this.opts.maxSize ?? Infinity;
    if (size > max) return false;
    const ttl = opts.ttlMs ?? this.opts.ttlMs ?? 0;
    this.map.set(key, { value, size, expiresAt: ttl > 0 ? Date.now() + ttl : 0 });
    this.total += size;
    // Oldest first: Map iterates in insertion order, and get() re-inserts.
    for (const oldest of this.map.keys()) {
      if (this.map.size <= this.opts.maxEntries && this.total <= max) break;
      this.delete(oldest);
    }
    return true;
  }

  delete(key: K): boolean {
    const slot = this.map.get(key);
    if (!slot) return false;
    this.map.delete(key);
    this.total -= slot.size;
    return true;
  }

  clear(): void {
    this.map.clear();
    this.total = 0;
  }

  /** The keys, oldest first (deleting while iterating is safe). */
  keys(): IterableIterator<K> {
    return this.map.keys();
  }

  /** The values, oldest first (expired ones not yet seen included). */
  *values(): IterableIterator<V> {
    for (const slot of this.map.values()) yield slot.value;
  }

  /** Drops every expired entry. */
  purgeStale(now = Date.now()): void {
    for (const [key, slot] of this.map) {
      if (slot.expiresAt !== 0 && slot.expiresAt <= now) this.delete(key);
    }
  }

  private live(key: K): Slot<V> | undefined {
    const slot = this.map.get(key);
    if (slot && slot.expiresAt !== 0 && slot.expiresAt <= Date.now()) {
      this.delete(key);
      return undefined;
    }
    return slot;
  }
}

/** The size of a JSON-serializable value as the UTF-16 length of its JSON: a cheap, stable bound. */
export function jsonSize(value: unknown): number {
  return (JSON.stringify(value) ?? "").length;
}
