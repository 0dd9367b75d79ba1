import { Errors } from "moleculer";

/**
 * Which stores of this process cannot write now (a full or failing disk). Readiness
 * reports them by name (docs/architecture.md rule 9: a write that fails answers 503 and turns the
 * node's readiness to 503 until writes succeed again); a store clears its entry itself.
 */
const failing = new Map<string, string>();

export const storeHealth = {
  failed(store: string, reason: string): void {
    failing.set(store, reason);
  },
  recovered(store: string): void {
    failing.delete(store);
  },
  /** "store: reason" for every store that cannot write; empty when all can. */
  problems(): string[] {
    return [...failing].map(([store, reason]) => `${store}: ${reason}`);
  },
};

/**
 * A write the store could not make durable. The client hears 503 SERVICE_UNAVAILABLE
 * (lib/gateway/http-errors.ts) with Retry-After, never a success and never a generic 500; it is
 * not retryable by the broker, since the disk will not have room a moment later.
 */
export class StoreUnavailableError extends Errors.MoleculerError {
  constructor(store: string) {
    // Our own type, so the circuit breaker can leave it out (moleculer.config.ts); the
    // gateway answers every 503 as SERVICE_UNAVAILABLE.
    super("Storage is unavailable", 503, "STORE_UNAVAILABLE", { store });
    this.name = "StoreUnavailableError";
  }
}
