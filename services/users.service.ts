import type { Context, ServiceSchema } from "moleculer";
import {
  DbMixin,
  DuplicateKeyError,
  type DbMethods,
  type DbVars,
  type Doc,
} from "../mixins/db.mixin";
import { conflict, notFound, unauthorized } from "../lib/errors";
import { newId } from "../lib/ids";
import { envStr } from "../lib/env";
import { jwtSecret, signAccessToken, type AuthUser } from "../lib/jwt";
import { dummyHash, hashPassword, verifyPassword } from "../lib/passwords";

/** users: accounts, login (JWT), profiles. Password hashes never leave this service. */

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
  $secureSettings: string[];
}

interface UsersMethods {
  toUser(doc: UserDoc): User;
  toProfile(doc: UserDoc): PublicProfile;
  issue(doc: UserDoc): { user: User; token: string };
  requireUser(ctx: Context<unknown, { user?: AuthUser }>): Promise<UserDoc>;
}

type Meta = { user?: AuthUser; $statusCode?: number; $location?: string };

const UsersService: ServiceSchema<UsersSettings, UsersMethods & DbMethods, DbVars> = {
  name: "users",
  mixins: [DbMixin({ users: { unique: ["email"], indexes: ["wallets.address"] } })],

  settings: {
    jwtSecret: jwtSecret(),
    jwtExpiresIn: envStr("JWT_EXPIRES_IN", "12h"),
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
        await this.broker.cacher?.clean(`users.get:${doc._id}*`);
        return this.toUser(updated);
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
        const query = /^0x[0-9a-fA-F]{40}$/.test(account)
          ? { "wallets.address": account.toLowerCase() }
          : { _id: account };
        const doc = await this.store<UserDoc>("users").findOne(query);
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
  },
};

export default UsersService;
