/**
 * Groups work by key: items submitted while a batch of their key is being processed
 * wait and go together in the next one. Batches of one key never overlap; different
 * keys run side by side. Each submitter learns the outcome of the batch its item was
 * in, so a channel handler can acknowledge (or have redelivered) exactly its own event.
 *
 * The read models use it to apply many events of one token (or one counter document)
 * with one compare-and-set instead of one each: under load a single document took
 * every event in turn, and the read models fell behind the ledger.
 */
export class KeyedBatcher<T> {
  private readonly queues = new Map<string, Array<Waiting<T>>>();

  constructor(
    private readonly process: (key: string, items: T[]) => Promise<void>,
    private readonly maxBatch = 500,
  ) {}

  submit(key: string, item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const queue = this.queues.get(key);
      if (queue) {
        queue.push({ item, resolve, reject });
        return;
      }
      // The first item of an idle key starts its run; the queue exists while it runs.
      this.queues.set(key, [{ item, resolve, reject }]);
      void this.run(key);
    });
  }

  /** Items waiting or in a batch, over all keys. */
  get size(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  private async run(key: string): Promise<void> {
    // Let the submissions of this turn of the event loop join the first batch.
    await new Promise<void>(resolve => setImmediate(resolve));
    const queue = this.queues.get(key)!;
    while (queue.length > 0) {
      const batch = queue.slice(0, this.maxBatch);
      try {
        await this.process(
          key,
          batch.map(w => w.item),
        );
        for (const w of batch) w.resolve();
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
      queue.splice(0, batch.length);
    }
    this.queues.delete(key);
  }
}

interface Waiting<T> {
  item: T;
  resolve(): void;
  reject(err: unknown): void;
}
