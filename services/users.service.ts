import type { Context, ServiceSchema } from "moleculer";
import { DbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { DuplicateKeyError, type Doc } from "../lib/store";
import { conflict, notFound, unauthorized } from "../lib/errors";
import { newId } from "../lib/ids";
import { envInt, envStr } from "../lib/env";
import { jwtSecret, signAccessToken, type AuthUser } from "../lib/jwt";
import { dummyHash, hashPassword, verifyPassword } from "../lib/passwords";
import {
  ADDRESS_PATTERN,
  buildChallenge,
  mismatch,
  normalizeAddress,
  parseMessage,
  verifySignature,
} from "../lib/siwe";

/**
 * users: accounts, login (JWT), profiles, wallets linked by a signed EIP-4361 message.
 * Password hashes never leave this service.
 */

interface Wallet {
  address: string;
  chainId: number;
  linkedAt: string;
}

interface UserDoc extends Doc {
  email: string;
  passwordHash: string;
  displayName: string;
  bio: string;
  avatarUrl: string | null;
  wallets: Wallet[];
  createdAt: string;
}

/** A wallet challenge: issued to one user for one address, valid until expiresAt, used once. */
interface ChallengeDoc extends Doc {
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
}

/**
 * Who owns an address. Its unique index, not the users documents, decides between two
 * users linking one address at the same moment; users.wallets mirrors it for display.
 */
interface WalletLinkDoc extends Doc {
  address: string;
  userId: string;
  chainId: number;
  linkedAt: string;
}

export interface User {
  id: string;
  email: string;
  displayName: string;
  bio: string;
  avatarUrl: string | null;
  wallets: Wallet[];
  createdAt: string;
}

export type PublicProfile = Omit<User, "email">;

interface UsersSettings {
  jwtSecret: string;
  jwtExpiresIn: string;
  siwe: { domain: string; uri: string; ttlMs: number };
  $secureSettings: string[];
}

interface UsersMethods {
  toUser(doc: UserDoc): User;
  toProfile(doc: UserDoc): PublicProfile;
  issue(doc: UserDoc): { user: User; token: string };
  requireUser(ctx: Context<unknown, { user?: AuthUser }>): Promise<UserDoc>;
  claimAddress(userId: string, address: string, chainId: number): Promise<Wallet>;
  walletsChanged(userId: string): Promise<void>;
}

type Meta = { user?: AuthUser; $statusCode?: number; $location?: string };

const UsersService: ServiceSchema<UsersSettings, UsersMethods & DbMethods, DbVars> = {
  name: "users",
  mixins: [
    DbMixin({
      users: { unique: ["email"], indexes: ["wallets.address"] },
      challenges: { unique: ["nonce"], indexes: ["expiresAt"] },
      walletLinks: { unique: ["address"], indexes: ["userId"] },
    }),
  ],

  settings: {
    jwtSecret: jwtSecret(),
    jwtExpiresIn: envStr("JWT_EXPIRES_IN", "12h"),
    // What the signed message names; a wallet shows it, so it must be the site the user is on.
    siwe: {
      domain: envStr("SIWE_DOMAIN", "localhost:3000"),
      uri: envStr("SIWE_URI", "http://localhost:3000"),
      ttlMs: envInt("SIWE_TTL_MS", 5 * 60_000),
    },
    // Never sent to other nodes in the service descriptor.
    $secureSettings: ["jwtSecret"],
  },

  actions: {
    register: {
      // Not idempotent, not keyed: a retry after a timeout that did register would answer 409.
      retryPolicy: { enabled: false },
      params: {
        $$strict: "remove",
        email: { type: "email", normalize: true, max: 254 },
        password: { type: "string", min: 8, max: 128 },
        displayName: { type: "string", trim: true, min: 1, max: 64 },
      },
      async handler(ctx: Context<{ email: string; password: string; displayName: string }, Meta>) {
        const { email, password, displayName } = ctx.params;
        const doc: UserDoc = {
          _id: newId("usr"),
          email,
          passwordHash: await hashPassword(password),
          displayName,
          bio: "",
          avatarUrl: null,
          wallets: [],
          createdAt: new Date().toISOString(),
        };
        try {
          // The unique index on email decides races between two registrations.
          await this.store<UserDoc>("users").insert(doc);
        } catch (err) {
          if (err instanceof DuplicateKeyError) {
            throw conflict("Email is already registered", [
              { field: "email", message: "already registered" },
            ]);
          }
          throw err;
        }
        this.logger.info({ userId: doc._id }, "User registered");
        ctx.meta.$statusCode = 201;
        ctx.meta.$location = `/api/users/${doc._id}`;
        return this.issue(doc);
      },
    },

    login: {
      params: {
        $$strict: "remove",
        email: { type: "string", trim: true, lowercase: true, min: 1, max: 254 },
        password: { type: "string", min: 1, max: 128 },
      },
      async handler(ctx: Context<{ email: string; password: string }>) {
        const doc = await this.store<UserDoc>("users").findOne({ email: ctx.params.email });
        // Same work and same answer for an unknown email and a wrong password.
        const ok = await verifyPassword(
          ctx.params.password,
          doc?.passwordHash ?? (await dummyHash()),
        );
        if (!doc || !ok) throw unauthorized("Invalid email or password");
        return this.issue(doc);
      },
    },

    me: {
      params: {},
      async handler(ctx: Context<unknown, Meta>) {
        return this.toUser(await this.requireUser(ctx));
      },
    },

    updateMe: {
      params: {
        $$strict: "remove",
        displayName: { type: "string", trim: true, min: 1, max: 64, optional: true },
        bio: { type: "string", max: 500, optional: true },
        avatarUrl: { type: "url", max: 2048, optional: true, nullable: true },
      },
      async handler(
        ctx: Context<{ displayName?: string; bio?: string; avatarUrl?: string | null }, Meta>,
      ) {
        const doc = await this.requireUser(ctx);
        const changes: Partial<UserDoc> = {};
        for (const key of ["displayName", "bio", "avatarUrl"] as const) {
          if (ctx.params[key] !== undefined) changes[key] = ctx.params[key] as never;
        }
        const updated =
          Object.keys(changes).length === 0
            ? doc
            : await this.store<UserDoc>("users").updateOne({ _id: doc._id }, { $set: changes });
        if (!updated) throw unauthorized();
        await this.broker.cacher?.clean(`users.get:*${doc._id}*`);
        return this.toUser(updated);
      },
    },

    walletChallenge: {
      params: {
        $$strict: "remove",
        address: { type: "string", pattern: ADDRESS_PATTERN },
        chainId: {
          type: "number",
          integer: true,
          positive: true,
          max: Number.MAX_SAFE_INTEGER,
        },
      },
      async handler(ctx: Context<{ address: string; chainId: number }, Meta>) {
        const user = await this.requireUser(ctx);
        const { domain, uri, ttlMs } = this.settings.siwe;
        const issuedAt = new Date();
        const expiresAt = new Date(issuedAt.getTime() + ttlMs);
        const { message, nonce } = buildChallenge({
          domain,
          uri,
          address: ctx.params.address,
          chainId: ctx.params.chainId,
          issuedAt,
          expiresAt,
        });
        const challenges = this.store<ChallengeDoc>("challenges");
        // Expired challenges can never be used again: drop them instead of keeping them forever.
        await challenges.remove({ expiresAt: { $lt: issuedAt.toISOString() } });
        await challenges.insert({
          _id: newId("chl"),
          nonce,
          userId: user._id,
          address: normalizeAddress(ctx.params.address),
          chainId: ctx.params.chainId,
          domain,
          uri,
          issuedAt: issuedAt.toISOString(),
          expiresAt: expiresAt.toISOString(),
          used: false,
        });
        ctx.meta.$statusCode = 201;
        // A challenge has no URL of its own; Location names where its signed message goes.
        ctx.meta.$location = "/api/users/me/wallets";
        return { message, nonce, expiresAt: expiresAt.toISOString() };
      },
    },

    linkWallet: {
      // A retry after a timeout that did link would find the challenge used and answer 401.
      retryPolicy: { enabled: false },
      params: {
        $$strict: "remove",
        message: { type: "string", min: 1, max: 4096 },
        signature: { type: "string", min: 1, max: 1024 },
      },
      async handler(ctx: Context<{ message: string; signature: string }, Meta>) {
        const user = await this.requireUser(ctx);
        const msg = parseMessage(ctx.params.message);
        if (!msg) throw unauthorized("Invalid signed message");
        const challenges = this.store<ChallengeDoc>("challenges");
        const challenge = await challenges.findOne({ nonce: msg.nonce });
        // One answer for unknown and foreign nonces: it tells nothing about other users' challenges.
        if (!challenge || challenge.userId !== user._id) {
          throw unauthorized("Unknown wallet challenge");
        }
        if (challenge.used) throw unauthorized("Wallet challenge already used");
        const now = new Date();
        if (Date.parse(challenge.expiresAt) <= now.getTime()) {
          throw unauthorized("Wallet challenge expired");
        }
        if (mismatch(msg, challenge)) {
          throw unauthorized("Signed message does not match the challenge");
        }
        const valid = await verifySignature(msg, ctx.params.signature, {
          domain: challenge.domain,
          nonce: challenge.nonce,
          now,
        });
        if (!valid) throw unauthorized("Invalid wallet signature");

        // Compare-and-set: of two racing submissions of one challenge only one flips it.
        const consumed = await challenges.updateOne(
          { _id: challenge._id, used: false },
          { $set: { used: true, usedAt: now.toISOString() } },
        );
        if (!consumed) throw unauthorized("Wallet challenge already used");

        const wallet = await this.claimAddress(user._id, challenge.address, challenge.chainId);
        // $addToSet of the entry built from the link: a repeated link adds no second entry.
        const updated = await this.store<UserDoc>("users").updateOne(
          { _id: user._id },
          { $addToSet: { wallets: wallet } },
        );
        if (!updated) throw unauthorized();
        await this.walletsChanged(user._id);
        this.logger.info({ userId: user._id, address: wallet.address }, "Wallet linked");
        ctx.meta.$statusCode = 201;
        // The public profile is where the linked wallet shows.
        ctx.meta.$location = `/api/users/${user._id}`;
        return this.toUser(updated);
      },
    },

    unlinkWallet: {
      params: {
        $$strict: "remove",
        address: { type: "string", pattern: ADDRESS_PATTERN },
      },
      async handler(ctx: Context<{ address: string }, Meta>) {
        const user = await this.requireUser(ctx);
        const address = normalizeAddress(ctx.params.address);
        // The profile first, then the link: a crash in between leaves the address still
        // owned (not claimable twice), and the owner's next unlink frees it.
        const pulled = await this.store<UserDoc>("users").updateOne(
          { _id: user._id, "wallets.address": address },
          { $pull: { wallets: { address } } },
        );
        const freed = await this.store<WalletLinkDoc>("walletLinks").remove({
          address,
          userId: user._id,
        });
        if (!pulled && freed === 0) throw notFound("Wallet");
        await this.walletsChanged(user._id);
        this.logger.info({ userId: user._id, address }, "Wallet unlinked");
        return this.toUser(pulled ?? user);
      },
    },

    get: {
      params: { id: { type: "string", min: 1, max: 64 } },
      cache: { keys: ["id"], ttl: 60 },
      async handler(ctx: Context<{ id: string }>) {
        const doc = await this.store<UserDoc>("users").findOne({ _id: ctx.params.id });
        if (!doc) throw notFound("User");
        return this.toProfile(doc);
      },
    },

    /**
     * Internal: an account as API.md takes it (a user id, or the 0x address of a
     * linked wallet) → the user id. Other services call it; the gateway never does.
     */
    resolveAccount: {
      visibility: "public",
      params: { account: { type: "string", min: 1, max: 128 } },
      cache: { keys: ["account"], ttl: 30 },
      async handler(ctx: Context<{ account: string }>) {
        const { account } = ctx.params;
        if (ADDRESS_PATTERN.test(account)) {
          // walletLinks is the owner of record (unique per address).
          const link = await this.store<WalletLinkDoc>("walletLinks").findOne({
            address: normalizeAddress(account),
          });
          if (!link) throw notFound("Account");
          return { id: link.userId };
        }
        const doc = await this.store<UserDoc>("users").findOne({ _id: account });
        if (!doc) throw notFound("Account");
        return { id: doc._id };
      },
    },
  },

  methods: {
    toUser(doc: UserDoc): User {
      return {
        id: doc._id,
        email: doc.email,
        displayName: doc.displayName,
        bio: doc.bio,
        avatarUrl: doc.avatarUrl,
        wallets: doc.wallets,
        createdAt: doc.createdAt,
      };
    },

    toProfile(doc: UserDoc): PublicProfile {
      const { email: _email, ...profile } = this.toUser(doc);
      return profile;
    },

    issue(doc: UserDoc) {
      const token = signAccessToken(
        { id: doc._id },
        this.settings.jwtSecret,
        this.settings.jwtExpiresIn,
      );
      return { user: this.toUser(doc), token };
    },

    async requireUser(ctx: Context<unknown, Meta>): Promise<UserDoc> {
      const id = ctx.meta.user?.id;
      if (!id) throw unauthorized();
      const doc = await this.store<UserDoc>("users").findOne({ _id: id });
      // A valid token for an account that no longer exists is as good as none.
      if (!doc) throw unauthorized();
      return doc;
    },

    /**
     * Makes `userId` the owner of `address` (409 when another user is). The unique index
     * decides races; the same user claiming again gets the entry it already has.
     */
    async claimAddress(userId: string, address: string, chainId: number): Promise<Wallet> {
      const links = this.store<WalletLinkDoc>("walletLinks");
      const entry = (l: WalletLinkDoc): Wallet => ({
        address: l.address,
        chainId: l.chainId,
        linkedAt: l.linkedAt,
      });
      // Twice at most: the owner found by a failed insert may unlink before we read it.
      for (let attempt = 0; attempt < 2; attempt++) {
        const link: WalletLinkDoc = {
          _id: newId("wln"),
          address,
          userId,
          chainId,
          linkedAt: new Date().toISOString(),
        };
        try {
          await links.insert(link);
          return entry(link);
        } catch (err) {
          if (!(err instanceof DuplicateKeyError)) throw err;
        }
        const owner = await links.findOne({ address });
        if (owner && owner.userId !== userId) {
          throw conflict("Wallet is linked to another account", [
            { field: "address", message: "linked to another account" },
          ]);
        }
        if (owner) return entry(owner);
      }
      throw conflict("Wallet is being linked or unlinked; try again");
    },

    /**
     * Profiles show wallets, and resolveAccount answers by address in any case: drop both
     * caches, and tell the services that keep resolved addresses of their own (tokens).
     * A node that misses the broadcast still drops them after its short TTL.
     */
    async walletsChanged(userId: string): Promise<void> {
      // Cache keys quote string params (users.get:"usr_…"): match around the id.
      await this.broker.cacher?.clean(`users.get:*${userId}*`);
      await this.broker.cacher?.clean("users.resolveAccount:**");
      await this.broker.broadcast("users.walletsChanged", { userId });
    },
  },
};

export default UsersService;
