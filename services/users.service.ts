import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { insertIfAbsent } from "../lib/store/store";
import { conflict, notFound, unauthorized } from "../lib/shared/errors";
import { created, requireUserId, type GatewayContext } from "../lib/shared/context";
import { newId } from "../lib/shared/ids";
import { envInt, envStr } from "../lib/shared/env";
import { jwtSecret, signAccessToken } from "../lib/users/jwt";
import { requiredInProduction } from "../lib/shared/config-guards";
import { textRule, urlRule } from "../lib/shared/text-rules";
import { dummyHash, hashPassword, verifyPassword } from "../lib/users/passwords";
import {
  ADDRESS_PATTERN,
  buildChallenge,
  normalizeAddress,
  parseMessage,
  verifySignature,
} from "../lib/users/siwe";
import {
  claimAddress,
  insertChallenge,
  toProfile,
  toUser,
  usableChallenge,
  USERS_COLLECTIONS,
  type ChallengeDoc,
  type User,
  type UserDoc,
  type WalletLinkDoc,
} from "../lib/users/users";
import {
  API_KEY_REVOKED_EVENT,
  API_KEY_SCOPES,
  ApiKeyEngine,
  refuseApiKey,
  type ApiKeyDoc,
  type ApiKeyRevoked,
} from "../lib/users/api-keys";
import type {
  RegisterParams,
  LoginParams,
  UpdateMeParams,
  WalletChallengeParams,
  LinkWalletParams,
  UnlinkWalletParams,
  GetParams,
  CreateKeyParams,
  ListKeysParams,
  ResolveKeyParams,
  ResolveAccountParams,
} from "../lib/users/params";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * users: accounts, login (JWT), profiles, wallets linked by a signed EIP-4361 message, API
 * keys (lib/users/api-keys.ts).
 * Password hashes never leave this service. The documents and their public shapes are
 * in lib/users/users.ts.
 */

export type { PublicProfile, User } from "../lib/users/users";

export interface UsersSettings extends ServiceSettingSchema {
  jwtSecret: string;
  /** Access token lifetime, as jsonwebtoken takes it ("12h", "90s"). */
  jwtExpiresIn: string;
  /** What a wallet challenge names, how long it is valid, how many a user may hold open. */
  siwe: { domain: string; uri: string; ttlMs: number; maxOpen: number };
  /** API keys a user may hold at once. */
  apiKeys: { maxPerUser: number };
}

interface UsersMethods {
  issue(doc: UserDoc): { user: User; token: string };
  /** The caller's document; with `what`, 403 when the caller is an API key (lib/users/api-keys.ts). */
  requireUser(ctx: GatewayContext, what?: string): Promise<UserDoc>;
  apiKeys(): ApiKeyEngine;
  forgetProfile(userId: string): Promise<void>;
  walletsChanged(userId: string): Promise<void>;
}

type UsersThis = Service<UsersSettings> & UsersMethods & DbMethods & DbVars;

const SCOPES = [...API_KEY_SCOPES];
const addressParam = { type: "string" as const, pattern: ADDRESS_PATTERN };
const alreadyRegistered = () =>
  conflict("Email is already registered", [{ field: "email", message: "already registered" }]);

const UsersService: ServiceSchema<UsersSettings, UsersMethods & DbMethods, DbVars> = {
  name: "users",
  mixins: [DbMixin(USERS_COLLECTIONS)],

  settings: {
    jwtSecret: jwtSecret(),
    jwtExpiresIn: envStr("JWT_EXPIRES_IN", "12h"),
    // What the signed message names; a wallet shows it, so it must be the site the user is on
    // (production refuses to start without them).
    siwe: {
      domain: requiredInProduction("SIWE_DOMAIN", "localhost:3000"),
      uri: requiredInProduction("SIWE_URI", "http://localhost:3000"),
      ttlMs: envInt("SIWE_TTL_MS", 5 * 60_000),
      maxOpen: envInt("SIWE_MAX_OPEN_CHALLENGES", 5),
    },
    apiKeys: { maxPerUser: envInt("API_KEYS_MAX_PER_USER", 50) },
    // Never sent to other nodes in the service descriptor.
    $secureSettings: ["jwtSecret"],
  },

  actions: {
    register: {
      openapi: { summary: "Register a user", status: 201, response: schemas.Session },
      // Not idempotent, not keyed: a retry after a timeout that did register would answer 409.
      retryPolicy: { enabled: false },
      params: {
        $$strict: "remove",
        email: { type: "email", normalize: true, max: 254 },
        password: { type: "string", min: 8, max: 128 },
        displayName: textRule({ trim: true, min: 1, max: 64 }),
      },
      async handler(ctx: GatewayContext<RegisterParams>) {
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
        // The unique index on email decides races between two registrations.
        if (!(await insertIfAbsent(this.store<UserDoc>("users"), doc))) throw alreadyRegistered();
        this.logger.info({ userId: doc._id }, "User registered");
        return created(ctx, `/api/users/${doc._id}`, this.issue(doc));
      },
    },

    login: {
      openapi: { summary: "Log in: a user and an access token", response: schemas.Session },
      params: {
        $$strict: "remove",
        email: { type: "string", trim: true, lowercase: true, min: 1, max: 254 },
        password: { type: "string", min: 1, max: 128 },
      },
      async handler(ctx: GatewayContext<LoginParams>) {
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
      openapi: { summary: "The caller", response: schemas.User },
      params: {},
      async handler(ctx: GatewayContext) {
        return toUser(await this.requireUser(ctx));
      },
    },

    updateMe: {
      openapi: { summary: "Change the caller's profile", response: schemas.User },
      params: {
        $$strict: "remove",
        displayName: textRule({ trim: true, min: 1, max: 64, optional: true }),
        bio: textRule({ max: 500, optional: true }),
        avatarUrl: urlRule({ optional: true, nullable: true }),
      },
      async handler(ctx: GatewayContext<UpdateMeParams>) {
        const doc = await this.requireUser(ctx, "change the profile");
        const { displayName, bio, avatarUrl } = ctx.params;
        const changes = Object.fromEntries(
          Object.entries({ displayName, bio, avatarUrl }).filter(([, v]) => v !== undefined),
        );
        const updated =
          Object.keys(changes).length === 0
            ? doc
            : await this.store<UserDoc>("users").updateOne({ _id: doc._id }, { $set: changes });
        if (!updated) throw unauthorized();
        await this.forgetProfile(doc._id);
        return toUser(updated);
      },
    },

    walletChallenge: {
      openapi: {
        summary: "A wallet challenge to sign (EIP-4361)",
        status: 201,
        response: schemas.WalletChallenge,
      },
      params: {
        $$strict: "remove",
        address: addressParam,
        chainId: { type: "number", integer: true, positive: true, max: Number.MAX_SAFE_INTEGER },
      },
      async handler(ctx: GatewayContext<WalletChallengeParams>) {
        const user = await this.requireUser(ctx, "manage wallets");
        const { address, chainId } = ctx.params;
        const { domain, uri, ttlMs } = this.settings.siwe;
        const issuedAt = new Date();
        const expiresAt = new Date(issuedAt.getTime() + ttlMs);
        const { message, nonce } = buildChallenge({
          userId: user._id,
          domain,
          uri,
          address,
          chainId,
          issuedAt,
          expiresAt,
        });
        const doc: ChallengeDoc = {
          _id: newId("chl"),
          nonce,
          userId: user._id,
          address: normalizeAddress(address),
          chainId,
          domain,
          uri,
          issuedAt: issuedAt.toISOString(),
          expiresAt: expiresAt.toISOString(),
          used: false,
        };
        const max = this.settings.siwe.maxOpen;
        await insertChallenge(this.store<ChallengeDoc>("challenges"), doc, max, issuedAt);
        // A challenge has no URL of its own; Location names where its signed message goes.
        return created(ctx, "/api/users/me/wallets", {
          message,
          nonce,
          expiresAt: expiresAt.toISOString(),
        });
      },
    },

    linkWallet: {
      openapi: {
        summary: "Link a wallet by its signed challenge",
        status: 201,
        response: schemas.User,
      },
      // A retry after a timeout that did link would find the challenge used and answer 401.
      retryPolicy: { enabled: false },
      params: {
        $$strict: "remove",
        message: { type: "string", min: 1, max: 4096 },
        signature: { type: "string", min: 1, max: 1024 },
      },
      async handler(ctx: GatewayContext<LinkWalletParams>) {
        const user = await this.requireUser(ctx, "manage wallets");
        const msg = parseMessage(ctx.params.message);
        if (!msg) throw unauthorized("Invalid signed message");
        const challenges = this.store<ChallengeDoc>("challenges");
        const now = new Date();
        const found = await challenges.findOne({ nonce: msg.nonce });
        const challenge = usableChallenge(found, user._id, msg, now);
        const valid = await verifySignature(msg, ctx.params.signature, {
          domain: challenge.domain,
          nonce: challenge.nonce,
          now,
        });
        if (!valid) throw unauthorized("Invalid wallet signature");

        // Compare-and-set: of two racing submissions of one challenge only one flips it.
        const consumed = await challenges.updateOne(
          { _id: challenge._id, used: false },
          // A used challenge frees its slot (it stays, to answer a replay 401, until expiry).
          { $set: { used: true, usedAt: now.toISOString() }, $unset: { slot: true } },
        );
        if (!consumed) throw unauthorized("Wallet challenge already used");

        const links = this.store<WalletLinkDoc>("walletLinks");
        const wallet = await claimAddress(links, user._id, challenge.address, challenge.chainId);
        // $addToSet of the entry built from the link: a repeated link adds no second entry.
        const updated = await this.store<UserDoc>("users").updateOne(
          { _id: user._id },
          { $addToSet: { wallets: wallet } },
        );
        if (!updated) throw unauthorized();
        await this.walletsChanged(user._id);
        this.logger.info({ userId: user._id, address: wallet.address }, "Wallet linked");
        // The public profile is where the linked wallet shows.
        return created(ctx, `/api/users/${user._id}`, toUser(updated));
      },
    },

    unlinkWallet: {
      openapi: { summary: "Unlink a wallet", response: schemas.User },
      params: { $$strict: "remove", address: addressParam },
      async handler(ctx: GatewayContext<UnlinkWalletParams>) {
        const user = await this.requireUser(ctx, "manage wallets");
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
        return toUser(pulled ?? user);
      },
    },

    get: {
      openapi: { summary: "A user's public profile", response: schemas.PublicProfile },
      params: { id: { type: "string", min: 1, max: 64 } },
      cache: { keys: ["id"], ttl: 60 },
      async handler(ctx: GatewayContext<GetParams>) {
        const doc = await this.store<UserDoc>("users").findOne({ _id: ctx.params.id });
        if (!doc) throw notFound("User");
        return toProfile(doc);
      },
    },

    createKey: {
      openapi: {
        summary: "Create an API key (its key is in this answer only)",
        status: 201,
        response: schemas.CreatedApiKey,
        errors: [403, 422],
      },
      // A retry after a timeout that did create would make a second key.
      retryPolicy: { enabled: false },
      params: {
        $$strict: "remove",
        name: textRule({ trim: true, min: 1, max: 64 }),
        scopes: { type: "array", min: 1, unique: true, items: { type: "enum", values: SCOPES } },
      },
      async handler(ctx: GatewayContext<CreateKeyParams>) {
        const user = await this.requireUser(ctx, "manage API keys");
        const made = await this.apiKeys().create(user._id, ctx.params.name, ctx.params.scopes);
        this.logger.info({ userId: user._id, keyId: made.id }, "API key created");
        return created(ctx, "/api/keys", made);
      },
    },

    listKeys: {
      openapi: { summary: "The caller's API keys (prefix only)", response: schemas.ApiKeyPage },
      params: {
        $$strict: "remove",
        limit: { type: "number", integer: true, min: 1, max: 100, default: 20, convert: true },
        offset: { type: "number", integer: true, min: 0, default: 0, convert: true },
      },
      async handler(ctx: GatewayContext<ListKeysParams>) {
        const user = await this.requireUser(ctx, "manage API keys");
        return this.apiKeys().list(user._id, ctx.params.limit, ctx.params.offset);
      },
    },

    deleteKey: {
      openapi: { summary: "Delete an API key", response: schemas.ApiKey, errors: [403] },
      params: { $$strict: "remove", id: { type: "string", min: 1, max: 64 } },
      async handler(ctx: GatewayContext<GetParams>) {
        const user = await this.requireUser(ctx, "manage API keys");
        const gone = await this.apiKeys().remove(user._id, ctx.params.id);
        // Every gateway forgets it now; one that misses this still asks again within a second.
        const revoked: ApiKeyRevoked = { keyId: gone.id };
        await this.broker.broadcast(API_KEY_REVOKED_EVENT, revoked);
        this.logger.info({ userId: user._id, keyId: gone.id }, "API key deleted");
        return gone;
      },
    },

    /** Internal: the gateway's question "who is this key?" (null: nobody). Never cached here. */
    resolveKey: {
      visibility: "public",
      params: { keyHash: { type: "string", pattern: /^[0-9a-f]{64}$/ } },
      handler(ctx: GatewayContext<ResolveKeyParams>) {
        return this.apiKeys().resolve(ctx.params.keyHash);
      },
    },

    /**
     * Internal: an account as docs/api.md takes it (a user id, or the 0x address of a
     * linked wallet) → the user id. Other services call it; the gateway never does.
     */
    resolveAccount: {
      visibility: "public",
      params: { account: { type: "string", min: 1, max: 128 } },
      cache: { keys: ["account"], ttl: 30 },
      async handler(ctx: GatewayContext<ResolveAccountParams>) {
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
    apiKeys() {
      return new ApiKeyEngine(this.store<ApiKeyDoc>("apiKeys"), this.settings.apiKeys.maxPerUser);
    },

    issue(doc: UserDoc) {
      const token = signAccessToken(
        { id: doc._id },
        this.settings.jwtSecret,
        this.settings.jwtExpiresIn,
      );
      return { user: toUser(doc), token };
    },

    async requireUser(ctx: GatewayContext, what?: string): Promise<UserDoc> {
      if (what) refuseApiKey(ctx.meta.user, what);
      const doc = await this.store<UserDoc>("users").findOne({ _id: requireUserId(ctx) });
      // A valid token for an account that no longer exists is as good as none.
      if (!doc) throw unauthorized();
      return doc;
    },

    /** Drops the cached public profile of `userId`. */
    async forgetProfile(userId: string): Promise<void> {
      // Cache keys quote string params (users.get:"usr_…"): match around the id.
      await this.broker.cacher?.clean(`users.get:*${userId}*`);
    },

    /**
     * Profiles show wallets, and resolveAccount answers by address in any case: drop both
     * caches, and tell the services that keep resolved addresses of their own (tokens).
     * A node that misses the broadcast still drops them after its short TTL.
     */
    async walletsChanged(userId: string): Promise<void> {
      await this.forgetProfile(userId);
      await this.broker.cacher?.clean("users.resolveAccount:**");
      await this.broker.broadcast("users.walletsChanged", { userId });
    },
  } satisfies UsersMethods & ThisType<UsersThis>,
};

export default UsersService;
