import type { SiweMessage } from "siwe";
import { insertIfAbsent, type CollectionSpec, type Doc, type Store } from "../store/store";
import { ClientError, conflict, unauthorized } from "../shared/errors";
import { newId } from "../shared/ids";
import { mismatch } from "./siwe";
import { API_KEYS_SPEC } from "./api-keys";

/**
 * The users service's documents and what the API shows of them (docs/api.md "Auth and
 * users"). No broker here: services/users.service.ts stores and serves them.
 */

export interface Wallet {
  address: string;
  chainId: number;
  linkedAt: string;
}

export interface UserDoc extends Doc {
  email: string;
  passwordHash: string;
  displayName: string;
  bio: string;
  avatarUrl: string | null;
  wallets: Wallet[];
  createdAt: string;
}

/** A wallet challenge: issued to one user for one address, valid until expiresAt, used once. */
export interface ChallengeDoc extends Doc {
  nonce: string;
  userId: string;
  address: string;
  chainId: number;
  domain: string;
  uri: string;
  issuedAt: string;
  expiresAt: string;
  used: boolean;
  usedAt?: string;
  /** `<userId>:<n>` while open (unused): one of the user's few slots; unset once used. */
  slot?: string;
}

/** The challenges collection: the unique slots bound a user's open challenges on any node. */
export const CHALLENGES_SPEC: CollectionSpec = {
  unique: ["nonce"],
  indexes: ["expiresAt", "userId"],
  uniqueSparse: ["slot"],
};

/** The users service's collections (what it passes to DbMixin). */
export const USERS_COLLECTIONS: Record<
  "users" | "challenges" | "walletLinks" | "apiKeys",
  CollectionSpec
> = {
  users: { unique: ["email"], indexes: ["wallets.address"] },
  challenges: CHALLENGES_SPEC,
  walletLinks: { unique: ["address"], indexes: ["userId"] },
  apiKeys: API_KEYS_SPEC,
};

/**
 * Stores a new challenge in a free one of its user's `max` slots, after dropping expired
 * challenges (they can never be used). With every slot held by an open challenge: 429,
 * `retryAfter` the seconds until the soonest of them expires. Refusing, rather than
 * dropping the oldest, keeps a challenge a wallet is signing right now valid.
 */
export async function insertChallenge(
  store: Store<ChallengeDoc>,
  doc: ChallengeDoc,
  max: number,
  now: Date,
): Promise<void> {
  await store.remove({ expiresAt: { $lt: now.toISOString() } });
  // A slot taken by a racing request is looked for again; more rounds than slots: refuse.
  for (let round = 0; round <= max; round++) {
    const open = await store.find({ userId: doc.userId, slot: { $exists: true } });
    const taken = new Set(open.map(c => c.slot));
    const slot = Array.from({ length: max }, (_, n) => `${doc.userId}:${n}`).find(
      s => !taken.has(s),
    );
    if (slot === undefined) {
      const soonest = Math.min(...open.map(c => Date.parse(c.expiresAt)));
      const retryAfter = Math.max(1, Math.ceil((soonest - now.getTime()) / 1000));
      throw new ClientError("Too many open wallet challenges", 429, "RATE_LIMITED", {
        retryAfter,
      });
    }
    if (await insertIfAbsent(store, { ...doc, slot })) return;
  }
  throw new ClientError("Too many open wallet challenges", 429, "RATE_LIMITED", { retryAfter: 1 });
}

/**
 * Who owns an address. Its unique index, not the users documents, decides between two
 * users linking one address at the same moment; users.wallets mirrors it for display.
 */
export interface WalletLinkDoc extends Doc {
  address: string;
  userId: string;
  chainId: number;
  linkedAt: string;
}

/** A user as its owner sees it: never the password hash. */
export interface User {
  id: string;
  email: string;
  displayName: string;
  bio: string;
  avatarUrl: string | null;
  wallets: Wallet[];
  createdAt: string;
}

/** A user as anyone sees it. */
export type PublicProfile = Omit<User, "email">;

export function toUser(doc: UserDoc): User {
  return {
    id: doc._id,
    email: doc.email,
    displayName: doc.displayName,
    bio: doc.bio,
    avatarUrl: doc.avatarUrl,
    wallets: doc.wallets,
    createdAt: doc.createdAt,
  };
}

export function toProfile(doc: UserDoc): PublicProfile {
  const { email: _email, ...profile } = toUser(doc);
  return profile;
}

/** The profile's entry for a wallet link. */
export function walletOf(link: WalletLinkDoc): Wallet {
  return { address: link.address, chainId: link.chainId, linkedAt: link.linkedAt };
}

/**
 * The challenge of signed message `msg`, when it can link a wallet for `userId` at `now`
 * (the signature aside); otherwise a 401 saying why.
 */
export function usableChallenge(
  challenge: ChallengeDoc | null,
  userId: string,
  msg: SiweMessage,
  now: Date,
): ChallengeDoc {
  // One answer for unknown and foreign nonces: it tells nothing about other users' challenges.
  if (!challenge || challenge.userId !== userId) throw unauthorized("Unknown wallet challenge");
  if (challenge.used) throw unauthorized("Wallet challenge already used");
  if (Date.parse(challenge.expiresAt) <= now.getTime()) {
    throw unauthorized("Wallet challenge expired");
  }
  if (mismatch(msg, challenge)) throw unauthorized("Signed message does not match the challenge");
  return challenge;
}

/**
 * Makes `userId` the owner of `address` (409 when another user is). The unique index
 * decides races; the same user claiming again gets the entry it already has.
 */
export async function claimAddress(
  links: Store<WalletLinkDoc>,
  userId: string,
  address: string,
  chainId: number,
): Promise<Wallet> {
  // Twice at most: the owner found by a failed insert may unlink before we read it.
  for (let attempt = 0; attempt < 2; attempt++) {
    const link: WalletLinkDoc = {
      _id: newId("wln"),
      address,
      userId,
      chainId,
      linkedAt: new Date().toISOString(),
    };
    if (await insertIfAbsent(links, link)) return walletOf(link);
    const owner = await links.findOne({ address });
    if (owner && owner.userId !== userId) {
      throw conflict("Wallet is linked to another account", [
        { field: "address", message: "linked to another account" },
      ]);
    }
    if (owner) return walletOf(owner);
  }
  throw conflict("Wallet is being linked or unlinked; try again");
}
