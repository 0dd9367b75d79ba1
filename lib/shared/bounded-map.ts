/**
 * A Map that holds at most `max` entries: setting a new key when full drops the oldest
 * one (insertion order). For in-process caches and memories (docs/architecture.md rule 10), where
 * losing an entry only costs a lookup.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(readonly max: number) {
    super();
  }

  override set(key: K, value: V): this {
    if (this.size >= this.max && !this.has(key)) {
      const oldest = this.keys().next();
      if (!oldest.done) this.delete(oldest.value);
    }
    return super.set(key, value);
  }
}
