import { createHash } from "node:crypto";
import { Errors } from "moleculer";
import { conflict } from "../shared/errors";
import { Lru, jsonSize } from "../shared/lru";

/**
 * Gateway side of Idempotency-Key (docs/api.md): the first answer to a key is kept and
 * replayed for the same key from the same user; a key reused with another request is
 * refused, as Stripe does. Kept only for authenticated callers and only what the action
 * decided, in a store with a bound: an LRU in this process, or the shared cacher (Redis)
 * whose entries expire.
 */
export interface StoredResponse {
  fingerprint: string;
  status: number;
  body: unknown;
}

export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

export function idempotencyCacheKey(scope: string, key: string): string {
  return `idem:${scope}:${createHash("sha256").update(key).digest("hex")}`;
}

/** What makes two requests the same: method, path with its query string, and body. */
export function requestFingerprint(method: string, url: string, body: unknown): string {
  return createHash("sha256")
    .update(`${method} ${url}\n${JSON.stringify(body ?? null)}`)
    .digest("hex");
}

/** Thrown from the gateway's hooks to answer with a stored response instead of calling the action. */
export class ReplayResponse extends Error {
  constructor(readonly stored: StoredResponse) {
    super("Idempotent replay");
  }
}

/** Where the answers are kept. */
export interface AnswerStore {
  get(key: string): Promise<StoredResponse | null>;
  set(key: string, answer: StoredResponse): Promise<void>;
}

/** In this process: at most maxEntries answers and maxSize characters of their JSON. */
export class MemoryAnswers implements AnswerStore {
  private readonly lru: Lru<string, StoredResponse>;

  constructor(opts: { maxEntries: number; maxSize: number }) {
    this.lru = new Lru<string, StoredResponse>({
      ...opts,
      sizeOf: jsonSize,
      ttlMs: IDEMPOTENCY_TTL_SECONDS * 1000,
    });
  }

  async get(key: string): Promise<StoredResponse | null> {
    return this.lru.get(key) ?? null;
  }

  async set(key: string, answer: StoredResponse): Promise<void> {
    this.lru.set(key, answer);
  }
}

/** The cacher calls used by CacherAnswers (Moleculer's Redis cacher). */
export interface SharedCacher {
  get(key: string): Promise<unknown>;
  set(key: string, data: unknown, ttl?: number): Promise<unknown>;
}

/** In the cacher every gateway shares (Redis), each answer expiring after IDEMPOTENCY_TTL. */
export class CacherAnswers implements AnswerStore {
  constructor(private readonly cacher: SharedCacher) {}

  async get(key: string): Promise<StoredResponse | null> {
    try {
      // The cacher gives back what set() stored; its typings say a plain record.
      return ((await this.cacher.get(key)) as StoredResponse | null) ?? null;
    } catch {
      // Without the record a retry could be done twice: ask the client to come back.
      throw new Errors.MoleculerRetryableError(
        "Idempotency records are unavailable",
        503,
        "SERVICE_UNAVAILABLE",
      );
    }
  }

  async set(key: string, answer: StoredResponse): Promise<void> {
    await this.cacher.set(key, answer, IDEMPOTENCY_TTL_SECONDS);
  }
}

/**
 * Whether an error answer is the action's own decision, kept as the key's answer: a
 * client error that is not retryable ("in progress" is), or the action's validation, and
 * never a 401 or 429. Gateway-side failures (unavailable, rate limits) may be retried.
 */
export function isKeptError(err: Error, status: number, type: string): boolean {
  if (status >= 500 || status === 401 || status === 429) return false;
  const retryable = (err as { retryable?: boolean }).retryable === true;
  return (err.name === "ClientError" && !retryable) || type === "VALIDATION_ERROR";
}

/** A request that carries an Idempotency-Key: where its answer is kept, and what it was. */
export interface KeyedRequest {
  cacheKey: string;
  fingerprint: string;
}

interface WarnLogger {
  warn(obj: object, msg: string): void;
}

/**
 * The gateway's side of keys: a request with a key already answered gets that answer
 * (ReplayResponse) or, when it is another request, a 409; so does one while the first is
 * still running on this gateway.
 */
export class IdempotencyGate {
  private readonly inflight = new Set<string>();

  constructor(
    private readonly answers: AnswerStore,
    private readonly logger: WarnLogger,
  ) {}

  /** Starts the request `fingerprint` of `scope` (a user id) with `key`; finish() ends it. */
  async begin(scope: string, key: string, fingerprint: string): Promise<KeyedRequest> {
    const cacheKey = idempotencyCacheKey(scope, key);
    const stored = await this.answers.get(cacheKey);
    if (stored) {
      if (stored.fingerprint !== fingerprint) {
        throw conflict("Idempotency-Key was already used for a different request");
      }
      throw new ReplayResponse(stored);
    }
    if (this.inflight.has(cacheKey)) {
      throw conflict("A request with this Idempotency-Key is in progress");
    }
    this.inflight.add(cacheKey);
    return { cacheKey, fingerprint };
  }

  /** Ends a keyed request, keeping `answer` when given; a store that fails is logged. */
  async finish(idem: KeyedRequest, answer?: { status: number; body: unknown }): Promise<void> {
    try {
      if (answer)
        await this.answers.set(idem.cacheKey, { fingerprint: idem.fingerprint, ...answer });
    } catch (err) {
      // The message only: a store's error may carry the answer, which may hold a token.
      this.logger.warn({ error: (err as Error).message }, "Idempotency-Key answer not kept");
    } finally {
      this.inflight.delete(idem.cacheKey);
    }
  }
}
