import { createHash, randomBytes } from "node:crypto";
import { insertIfAbsent, type CollectionSpec, type Doc, type Store } from "../store/store";
import { businessError, conflict, forbidden, notFound } from "../shared/errors";
import { newId } from "../shared/ids";

/**
 * API keys for server-to-server clients (docs/api.md "API keys"): a key is `mm_` and 32
 * random bytes (base64url), shown once when made and stored only as its SHA-256: a key of
 * 256 random bits cannot be guessed from its hash, so it needs no slow hash (scrypt would
 * cost every request of a key a hash). The gateway hashes what a client presents and asks
 * users to resolve the hash (ApiKeyEngine.resolve); the key itself never leaves the gateway.
 */

export const API_KEY_SCOPES = ["read", "transfer", "mint", "market", "webhooks"] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** `mm_` and 43 base64url characters (32 bytes). */
export const API_KEY_PATTERN = /^mm_[A-Za-z0-9_-]{43}$/;
/** What lists show of a key: enough to tell keys apart, far too little to use one. */
export const API_KEY_PREFIX_LENGTH = 12;

export const isApiKey = (token: string): boolean => token.startsWith("mm_");

/** The stored form of a key (hex SHA-256), what the gateway sends to resolve it. */
export const hashApiKey = (key: string): string => createHash("sha256").update(key).digest("hex");

export interface ApiKeyDoc extends Doc {
  userId: string;
  name: string;
  scopes: ApiKeyScope[];
  prefix: string;
  hash: string;
  /** `<userId>:<n>`, one of the user's `maxPerUser` slots: the unique index bounds the count on any node. */
  slot: string;
  createdAt: string;
}

/** A key as its owner's lists show it (never the key, never the hash). */
export interface ApiKey {
  id: string;
  name: string;
  scopes: ApiKeyScope[];
  prefix: string;
  createdAt: string;
}

/** A key just made: the only answer that carries `key`. */
export interface CreatedApiKey extends ApiKey {
  key: string;
}

/** Who a presented key acts as. */
export interface ApiKeyOwner {
  userId: string;
  keyId: string;
  scopes: ApiKeyScope[];
}

export const API_KEYS_SPEC: CollectionSpec = { unique: ["hash", "slot"], indexes: ["userId"] };

/** The broadcast that makes every gateway forget a deleted key at once. */
export const API_KEY_REVOKED_EVENT = "users.apiKeyRevoked";
export interface ApiKeyRevoked {
  keyId: string;
}

const toApiKey = (d: ApiKeyDoc): ApiKey => ({
  id: d._id,
  name: d.name,
  scopes: d.scopes,
  prefix: d.prefix,
  createdAt: d.createdAt,
});

/** 403 when the caller is an API key: keys do not manage keys, wallets, the profile or the password. */
export function refuseApiKey(user: { keyId?: string } | null | undefined, what: string): void {
  if (user?.keyId) throw forbidden(`An API key cannot ${what}; use a user token`);
}

export class ApiKeyEngine {
  constructor(
    private readonly store: Store<ApiKeyDoc>,
    private readonly maxPerUser: number,
  ) {}

  /** A new key of `userId`; 422 TOO_MANY_API_KEYS when all of the user's slots are taken. */
  async create(userId: string, name: string, scopes: ApiKeyScope[]): Promise<CreatedApiKey> {
    const key = `mm_${randomBytes(32).toString("base64url")}`;
    const base = {
      _id: newId("key"),
      userId,
      name,
      // In the order of API_KEY_SCOPES, whatever order they were given in.
      scopes: API_KEY_SCOPES.filter(s => scopes.includes(s)),
      prefix: key.slice(0, API_KEY_PREFIX_LENGTH),
      hash: hashApiKey(key),
      createdAt: new Date().toISOString(),
    };
    // A slot taken by a racing create is looked for again; more rounds than slots: refuse.
    for (let round = 0; round <= this.maxPerUser; round++) {
      const held = await this.store.find({ userId });
      const taken = new Set(held.map(k => k.slot));
      const free = Array.from({ length: this.maxPerUser }, (_, n) => `${userId}:${n}`).find(
        s => !taken.has(s),
      );
      if (free === undefined) {
        throw businessError(
          "TOO_MANY_API_KEYS",
          `At most ${this.maxPerUser} API keys per user; delete one first`,
          { max: this.maxPerUser },
        );
      }
      const doc: ApiKeyDoc = { ...base, slot: free };
      if (await insertIfAbsent(this.store, doc)) return { ...toApiKey(doc), key };
    }
    throw conflict("API keys are being created at the same time; try again");
  }

  /** The user's keys, newest first. */
  async list(userId: string, limit: number, offset: number) {
    const [rows, total] = await Promise.all([
      this.store.find({ userId }, { sort: { createdAt: -1 }, limit, offset }),
      this.store.count({ userId }),
    ]);
    return { rows: rows.map(toApiKey), total };
  }

  /** Deletes the user's key `id`: 404 for a key that is not theirs (or gone). */
  async remove(userId: string, id: string): Promise<ApiKey> {
    const doc = await this.store.findOne({ _id: id, userId });
    if (!doc || (await this.store.remove({ _id: id, userId })) === 0) throw notFound("API key");
    return toApiKey(doc);
  }

  /** Who the key with this hash acts as; null for none. */
  async resolve(hash: string): Promise<ApiKeyOwner | null> {
    const doc = await this.store.findOne({ hash });
    return doc ? { userId: doc.userId, keyId: doc._id, scopes: doc.scopes } : null;
  }
}
