import type { Context, Service, ServiceSchema } from "moleculer";
import {
  DbMixin,
  DuplicateKeyError,
  type DbMethods,
  type DbVars,
  type Doc,
} from "../mixins/db.mixin";
import { envInt, envStr } from "../lib/env";
import { ReadFallbackMixin } from "../mixins/read-fallback.mixin";
import { notFound } from "../lib/errors";
import {
  TOKEN_EVENTS,
  type BalanceAfter,
  type DomainEvent,
  type Token,
  type TokenCreated,
  type TokenDeleted,
  type TokenTransferred,
  type TokenUpdated,
} from "../lib/events";
import {
  CATALOG_SORTS,
  freshStats,
  FROM_THE_START,
  isDomainEvent,
  listQuery,
  listSort,
  toCatalogToken,
  viewStats,
  viewTokenFields,
  type CatalogSort,
  type CatalogToken,
  type ChannelSchemas,
  type ViewStats,
  type ViewTokenFields,
} from "../lib/read-model";

/**
 * catalog: the CQRS read model of tokens (DESIGN.md), built only from the tokens.*
 * channels, which arrive at least once and in no guaranteed order across channels.
 *
 * Every effect is idempotent by construction, so a redelivery (or a crash halfway
 * through a handler) can never count twice:
 *  - balances are compare-and-set on BalanceAfter.version (newest wins);
 *  - a transfer is a row keyed by transferId; stats are counts of rows, never `$inc`;
 *  - token fields are guarded by occurredAt; a deletion leaves a tombstone.
 * Applied eventIds are remembered too, so a duplicate is skipped without any work.
 *
 * A view may exist before tokens.created (a transfer overtook it): such a placeholder
 * collects stats but is not visible until the token itself arrives.
 */

export interface ViewDoc extends Doc, Partial<ViewTokenFields>, ViewStats {
  hasToken: boolean;
  deleted: boolean;
  /** occurredAt of the event that last set the token fields ("" for none yet). */
  tokenAt: string;
  /** Bumped before every recount; the recount is written only if newer (see refreshStats). */
  statsSeq: number;
  statsAt: number;
}

interface BalanceDoc extends Doc {
  tokenId: string;
  account: string;
  amount: string;
  version: number;
}

interface TransferDoc extends Doc {
  tokenId: string;
}

interface AppliedDoc extends Doc {
  type: string;
  appliedAt: string;
}

interface CatalogSettings {
  featuredMinHolders: number;
}

interface CatalogMethods {
  consume(channel: string, event: unknown): Promise<void>;
  ensureView(tokenId: string): Promise<void>;
  setToken(tokenId: string, token: Token, at: string, onlyIfNew: boolean): Promise<void>;
  applyBalances(tokenId: string, balances: BalanceAfter[]): Promise<void>;
  refreshStats(tokenId: string): Promise<void>;
  cleanCache(tokenIds: string[]): Promise<void>;
}

interface CatalogVars {
  cleanTimers: Set<NodeJS.Timeout>;
}

type CatalogThis = Service<CatalogSettings> & CatalogMethods & DbMethods & DbVars & CatalogVars;

interface ListParams {
  q?: string;
  creator?: string;
  sort: CatalogSort;
  featured?: boolean;
  limit: number;
  offset: number;
}

/** Several replicas share one group, so each event is applied once (on a shared database). */
const group = envStr("CATALOG_GROUP", "catalog");
/** Seconds a read may be served from cache; events clean it sooner. */
const cacheTtl = envInt("CATALOG_CACHE_TTL", 30);
/**
 * A read that started before an event and stores its result after the event's clean
 * would keep stale data until the TTL; a second clean shortly after closes that window.
 */
const recleanMs = envInt("CATALOG_RECLEAN_MS", 250);

/** Our own key for one token, so an event can clean exactly that entry. */
const getCacheKey = (id: string): string => `catalog.get:${id}`;

/** The channels the view needs; approvals change nothing a catalog shows. */
const CONSUMED = [
  TOKEN_EVENTS.created,
  TOKEN_EVENTS.transferred,
  TOKEN_EVENTS.updated,
  TOKEN_EVENTS.deleted,
] as const;

const channels: ChannelSchemas<CatalogThis> = Object.fromEntries(
  CONSUMED.map(channel => [
    channel,
    {
      group,
      nats: FROM_THE_START,
      async handler(this: CatalogThis, ctx: Context<unknown>) {
        await this.consume(channel, ctx.params);
      },
    },
  ]),
);

const CatalogService: ServiceSchema<
  CatalogSettings,
  CatalogMethods & DbMethods,
  DbVars & CatalogVars
> & { channels: ChannelSchemas<CatalogThis> } = {
  name: "catalog",
  mixins: [
    DbMixin({
      views: {
        indexes: ["creatorId", "createdAt", "nameLower", "symbolLower", "holders", "transfers"],
      },
      balances: { indexes: ["tokenId"] },
      transfers: { indexes: ["tokenId"] },
      applied: {},
    }),
    // Serves the last good read when the store or tokens.get (the fallback) fails.
    ReadFallbackMixin({ actions: ["list", "get"] }),
  ],

  settings: {
    featuredMinHolders: envInt("CATALOG_FEATURED_MIN_HOLDERS", 3),
  },

  channels,

  actions: {
    list: {
      params: {
        $$strict: "remove",
        q: { type: "string", trim: true, max: 64, optional: true },
        creator: { type: "string", trim: true, min: 1, max: 128, optional: true },
        sort: { type: "enum", values: [...CATALOG_SORTS], optional: true, default: "createdAt" },
        featured: { type: "boolean", convert: true, optional: true },
        limit: {
          type: "number",
          integer: true,
          convert: true,
          min: 1,
          max: 100,
          optional: true,
          default: 20,
        },
        offset: {
          type: "number",
          integer: true,
          convert: true,
          min: 0,
          optional: true,
          default: 0,
        },
      },
      cache: { keys: ["q", "creator", "sort", "featured", "limit", "offset"], ttl: cacheTtl },
      async handler(ctx: Context<ListParams>): Promise<{ rows: CatalogToken[]; total: number }> {
        const { limit, offset, sort } = ctx.params;
        const query = listQuery(ctx.params);
        const views = this.store<ViewDoc>("views");
        const [docs, total] = await Promise.all([
          views.find(query, { sort: listSort(sort), limit, offset }),
          views.count(query),
        ]);
        return {
          rows: docs.map(d => toCatalogToken(d as ViewDoc & ViewTokenFields)),
          total,
        };
      },
    },

    get: {
      params: { $$strict: "remove", id: { type: "string", min: 1, max: 64 } },
      cache: {
        keys: ["id"],
        ttl: cacheTtl,
        keygen: (_a, _o, ctx) => getCacheKey((ctx.params as { id: string }).id),
      },
      async handler(ctx: Context<{ id: string }>): Promise<CatalogToken> {
        const view = await this.store<ViewDoc>("views").findOne({ _id: ctx.params.id });
        if (view?.deleted) throw notFound("Token");
        if (view?.hasToken) return toCatalogToken(view as ViewDoc & ViewTokenFields);

        // Not consumed yet: ask the write model, so a client reads what it just created.
        let token: Token;
        try {
          token = await ctx.call<Token, { id: string }>("tokens.get", { id: ctx.params.id });
        } catch (err) {
          // Only "no such token" is a 404; tokens being down must not look like absence.
          if ((err as { type?: string }).type === "NOT_FOUND") throw notFound("Token");
          throw err;
        }
        const stats = freshStats(token, this.settings.featuredMinHolders, view ?? undefined);
        return {
          ...token,
          featured: stats.featured,
          stats: { holders: stats.holders, transfers: stats.transfers },
        };
      },
    },
  },

  events: {
    /** Broadcast after every applied event, so each replica's cache forgets it (Memory cacher). */
    "catalog.changed": {
      async handler(this: CatalogThis, ctx: Context<{ tokenIds?: string[] }>) {
        await this.cleanCache(ctx.params.tokenIds ?? []);
      },
    },
  },

  methods: {
    async consume(channel: string, raw: unknown): Promise<void> {
      if (!isDomainEvent(raw)) {
        // It will never become valid: retrying would only block the channel.
        this.logger.error({ channel }, "Malformed event skipped");
        return;
      }
      const event = raw as DomainEvent<unknown>;
      const applied = this.store<AppliedDoc>("applied");
      if (await applied.findOne({ _id: event.eventId })) {
        this.logger.debug({ eventId: event.eventId, channel }, "Duplicate event skipped");
        return;
      }

      let tokenId: string;
      switch (channel) {
        case TOKEN_EVENTS.created: {
          const data = event.data as TokenCreated;
          tokenId = data.token.id;
          await this.ensureView(tokenId);
          // updated may have overtaken created: then created's older fields lose.
          await this.setToken(tokenId, data.token, event.occurredAt, true);
          await this.applyBalances(tokenId, data.balances ?? []);
          await this.refreshStats(tokenId);
          break;
        }
        case TOKEN_EVENTS.transferred: {
          const data = event.data as TokenTransferred;
          tokenId = data.tokenId;
          await this.ensureView(tokenId);
          try {
            await this.store<TransferDoc>("transfers").insert({ _id: data.transferId, tokenId });
          } catch (err) {
            if (!(err instanceof DuplicateKeyError)) throw err;
          }
          await this.applyBalances(tokenId, data.balances ?? []);
          await this.refreshStats(tokenId);
          break;
        }
        case TOKEN_EVENTS.updated: {
          const data = event.data as TokenUpdated;
          tokenId = data.token.id;
          await this.ensureView(tokenId);
          await this.setToken(tokenId, data.token, event.occurredAt, false);
          break;
        }
        case TOKEN_EVENTS.deleted: {
          tokenId = (event.data as TokenDeleted).tokenId;
          await this.ensureView(tokenId);
          // A tombstone, so a late transfer or update cannot bring the token back.
          await this.store<ViewDoc>("views").updateOne(
            { _id: tokenId },
            { $set: { deleted: true } },
          );
          break;
        }
        default:
          return;
      }

      try {
        await applied.insert({
          _id: event.eventId,
          type: channel,
          appliedAt: new Date().toISOString(),
        });
      } catch (err) {
        if (!(err instanceof DuplicateKeyError)) throw err;
      }
      await this.broker.broadcast("catalog.changed", { tokenIds: [tokenId] });
    },

    async ensureView(tokenId: string): Promise<void> {
      const views = this.store<ViewDoc>("views");
      if (await views.findOne({ _id: tokenId })) return;
      try {
        await views.insert({
          _id: tokenId,
          hasToken: false,
          deleted: false,
          tokenAt: "",
          holders: 0,
          transfers: 0,
          featured: false,
          statsSeq: 0,
          statsAt: 0,
        });
      } catch (err) {
        if (!(err instanceof DuplicateKeyError)) throw err; // another handler made it first
      }
    },

    async setToken(tokenId: string, token: Token, at: string, onlyIfNew: boolean): Promise<void> {
      const guard = onlyIfNew ? { hasToken: false } : { tokenAt: { $lte: at } };
      await this.store<ViewDoc>("views").updateOne(
        { _id: tokenId, ...guard },
        { $set: { ...viewTokenFields(token), hasToken: true, tokenAt: at } },
      );
    },

    async applyBalances(tokenId: string, balances: BalanceAfter[]): Promise<void> {
      const store = this.store<BalanceDoc>("balances");
      for (const b of balances) {
        const _id = `${tokenId}/${b.account}`;
        const cas = () =>
          store.updateOne(
            { _id, version: { $lt: b.version } },
            { $set: { amount: b.amount, version: b.version } },
          );
        if (await cas()) continue;
        try {
          await store.insert({
            _id,
            tokenId,
            account: b.account,
            amount: b.amount,
            version: b.version,
          });
        } catch (err) {
          if (!(err instanceof DuplicateKeyError)) throw err;
          // It exists: either at a newer version (nothing to do) or inserted just now.
          await cas();
        }
      }
    },

    /**
     * Recounts holders and transfers. Each recount takes a ticket (statsSeq) before it
     * counts and is written only if no later ticket wrote first, so the last write
     * always holds a count taken after every change before it — also across replicas.
     */
    async refreshStats(tokenId: string): Promise<void> {
      const views = this.store<ViewDoc>("views");
      const ticket = await views.updateOne({ _id: tokenId }, { $inc: { statsSeq: 1 } });
      if (!ticket) return;
      const [holders, transfers] = await Promise.all([
        this.store<BalanceDoc>("balances").count({ tokenId, amount: { $ne: "0" } }),
        this.store<TransferDoc>("transfers").count({ tokenId }),
      ]);
      await views.updateOne(
        { _id: tokenId, statsAt: { $lt: ticket.statsSeq } },
        {
          $set: {
            ...viewStats(holders, transfers, this.settings.featuredMinHolders),
            statsAt: ticket.statsSeq,
          },
        },
      );
    },

    async cleanCache(tokenIds: string[]): Promise<void> {
      const cacher = this.broker.cacher;
      if (!cacher) return;
      const clean = async () => {
        await Promise.all([
          cacher.clean("catalog.list:**"),
          ...tokenIds.map(id => cacher.clean(getCacheKey(id))),
        ]);
      };
      await clean();
      const timer = setTimeout(() => {
        this.cleanTimers.delete(timer);
        clean().catch(err => this.logger.warn({ err }, "Catalog cache clean failed"));
      }, recleanMs);
      timer.unref();
      this.cleanTimers.add(timer);
    },
  },

  created() {
    this.cleanTimers = new Set();
  },

  async stopped() {
    for (const t of this.cleanTimers) clearTimeout(t);
    this.cleanTimers.clear();
  },
};

export default CatalogService;
