import type { Context, Service, ServiceSchema } from "moleculer";
import { DbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { DuplicateKeyError, type Doc } from "../lib/store";
import { envInt, envStr } from "../lib/env";
import { KeyedBatcher } from "../lib/batcher";
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
  holderFlip,
  holderKey,
  isDomainEvent,
  listQuery,
  listSort,
  parseStatsKey,
  toCatalogToken,
  transferKey,
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
 *  - a transfer is a row keyed by transferId;
 *  - token fields are guarded by occurredAt; a deletion leaves a tombstone.
 * Applied eventIds are remembered too, so a duplicate is skipped without any work.
 *
 * Stats (holders, transfers) are maintained incrementally, not recounted: a recount of a
 * token's transfers costs O(its transfers) per event, so a burst on one token cost
 * O(n²) and the catalog fell behind for good. Each change is keyed (lib/read-model
 * StatsKey) and applied the way analytics applies counters, so it lands exactly once
 * even across a crash or two replicas handling the same event:
 *  1. a compare-and-set on the view's `rev` changes the counts and pushes the keys onto
 *     `pending`, after checking that neither `pending` nor the source (the transfer row,
 *     the balance's `flips`) has them yet;
 *  2. the sources are written: the transfer row inserted, the balance's `flips` moved on;
 *  3. the keys are pulled from `pending`.
 * A handler that dies between 1 and 3 leaves its keys in `pending`; its redelivery, the
 * next event of that token, or the sweep at start-up finishes them (step 2 is
 * idempotent). Checking `pending` before the source, then writing on an unchanged `rev`,
 * closes the window where another handler finishes the same key in between.
 *
 * A view may exist before tokens.created (a transfer overtook it): such a placeholder
 * collects stats but is not visible until the token itself arrives.
 *
 * Transfers are many and all land on their token's view, so they are taken many at a
 * time (CATALOG_TRANSFERS_IN_FLIGHT) and applied per token in batches: one pass of the
 * steps above for all the transfers that arrived meanwhile. One by one, the view fell
 * behind the ledger under load. A transfer's row in `transfers` is what marks it
 * counted, in a batch as alone.
 */

export interface ViewDoc extends Doc, Partial<ViewTokenFields>, ViewStats {
  hasToken: boolean;
  deleted: boolean;
  /** occurredAt of the event that last set the token fields ("" for none yet). */
  tokenAt: string;
  /** Bumped by every change of the stats: their compare-and-set. */
  rev: number;
  /** Keys of stats changes applied here whose sources are not written yet (see above). */
  pending: string[];
}

interface BalanceDoc extends Doc {
  tokenId: string;
  account: string;
  amount: string;
  version: number;
  /** How often the view's holder count followed this balance: odd = counted as a holder. */
  flips: number;
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
  applyTransfers(tokenId: string, events: Array<DomainEvent<TokenTransferred>>): Promise<void>;
  markApplied(events: Array<DomainEvent<unknown>>, channel: string): Promise<void>;
  ensureView(tokenId: string): Promise<void>;
  setToken(tokenId: string, token: Token, at: string, onlyIfNew: boolean): Promise<void>;
  applyBalances(tokenId: string, balances: BalanceAfter[]): Promise<void>;
  settleStats(tokenId: string, transferIds: string[], accounts: string[]): Promise<void>;
  commitStatsKey(tokenId: string, key: string): Promise<void>;
  upgradeStats(): Promise<void>;
  cleanCache(tokenIds: string[]): Promise<void>;
  flushClean(): Promise<void>;
}

interface CatalogVars {
  /** tokens.transferred events, applied per token in batches. */
  transferBatches: KeyedBatcher<DomainEvent<TokenTransferred>>;
  /** Delayed re-cleans, one per clean. */
  cleanTimers: Set<NodeJS.Timeout>;
  /** Tokens changed since the last clean of the list entries. */
  cleanIds: Set<string>;
  /** The next clean, when one is waiting for its window. */
  cleanTimer: NodeJS.Timeout | null;
  lastCleanAt: number;
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
/**
 * Cleaning `catalog.list:**` walks every key of a memory cacher (SCAN on Redis): it runs
 * at most once per window, however many events arrive in it. A list may be this much
 * staler under load; a token's own entry is dropped on every event (one key, O(1)).
 */
const cleanWindowMs = envInt("CATALOG_CLEAN_WINDOW_MS", 100);
/** Stats compare-and-set rounds before giving up (the event is then redelivered). */
const MAX_STATS_ROUNDS = 50;
/**
 * Transfers handled at once: they are batched per token (see applyTransfers), which
 * only helps when several are delivered before the first is acknowledged. The view is
 * order-independent, so this costs nothing in correctness.
 */
const transfersInFlight = envInt("CATALOG_TRANSFERS_IN_FLIGHT", 200);

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
      ...(channel === TOKEN_EVENTS.transferred ? { maxInFlight: transfersInFlight } : {}),
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
      if (channel === TOKEN_EVENTS.transferred) {
        const data = event.data as TokenTransferred;
        await this.transferBatches.submit(data.tokenId, event as DomainEvent<TokenTransferred>);
        return;
      }
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
          const balances = data.balances ?? [];
          await this.applyBalances(tokenId, balances);
          await this.settleStats(
            tokenId,
            [],
            balances.map(b => b.account),
          );
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

      await this.markApplied([event], channel);
      await this.broker.broadcast("catalog.changed", { tokenIds: [tokenId] });
    },

    /**
     * The transfers of one token that arrived together: one pass over the view for all
     * of them. Each balance takes the newest version among them (what applying them one
     * by one would leave), and the stats count every transfer not counted yet.
     */
    async applyTransfers(
      tokenId: string,
      events: Array<DomainEvent<TokenTransferred>>,
    ): Promise<void> {
      const byId = new Map(events.map(e => [e.eventId, e]));
      const seen = await this.store<AppliedDoc>("applied").find({ _id: { $in: [...byId.keys()] } });
      for (const d of seen) byId.delete(d._id);
      if (byId.size === 0) {
        this.logger.debug({ tokenId, count: events.length }, "Duplicate events skipped");
        return;
      }
      const fresh = [...byId.values()];
      await this.ensureView(tokenId);
      const newest = new Map<string, BalanceAfter>();
      for (const e of fresh) {
        for (const b of e.data.balances ?? []) {
          const cur = newest.get(b.account);
          if (!cur || b.version > cur.version) newest.set(b.account, b);
        }
      }
      await this.applyBalances(tokenId, [...newest.values()]);
      // The transfer rows are written by settleStats, as the mark that they are counted.
      await this.settleStats(
        tokenId,
        fresh.map(e => e.data.transferId),
        [...newest.keys()],
      );
      await this.markApplied(fresh, TOKEN_EVENTS.transferred);
      await this.broker.broadcast("catalog.changed", { tokenIds: [tokenId] });
    },

    /** Remembers the events as applied, so a redelivery is skipped without any work. */
    async markApplied(events: Array<DomainEvent<unknown>>, channel: string): Promise<void> {
      const applied = this.store<AppliedDoc>("applied");
      const appliedAt = new Date().toISOString();
      await Promise.all(
        events.map(async e => {
          try {
            await applied.insert({ _id: e.eventId, type: channel, appliedAt });
          } catch (err) {
            if (!(err instanceof DuplicateKeyError)) throw err;
          }
        }),
      );
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
          rev: 0,
          pending: [],
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
      // Different documents: side by side, so their writes share one trip to the disk.
      await Promise.all(
        balances.map(async b => {
          const _id = `${tokenId}/${b.account}`;
          const cas = () =>
            store.updateOne(
              { _id, version: { $lt: b.version } },
              { $set: { amount: b.amount, version: b.version } },
            );
          if (await cas()) return;
          try {
            await store.insert({
              _id,
              tokenId,
              account: b.account,
              amount: b.amount,
              version: b.version,
              flips: 0,
            });
          } catch (err) {
            if (!(err instanceof DuplicateKeyError)) throw err;
            // It exists: either at a newer version (nothing to do) or inserted just now.
            await cas();
          }
        }),
      );
    },

    /**
     * Brings the view's stats up to date with these transfers and balances (and finishes
     * any change left pending by an earlier handler): steps 1–3 in the header. Reads and
     * writes by primary key, as many as the transfers and accounts, whatever the token's
     * history.
     */
    async settleStats(tokenId: string, transferIds: string[], accounts: string[]): Promise<void> {
      const views = this.store<ViewDoc>("views");
      const balances = this.store<BalanceDoc>("balances");
      for (let round = 0; round < MAX_STATS_ROUNDS; round++) {
        const view = await views.findOne({ _id: tokenId });
        if (!view) return;
        const pending = new Set(view.pending ?? []);

        // Read after the view: whatever another handler finished before that read is
        // visible in its source now; whatever it applies after it moves `rev`.
        const fresh: string[] = [];
        let transfers = 0;
        let holders = 0;
        const uncounted = [...new Set(transferIds)].filter(id => !pending.has(transferKey(id)));
        if (uncounted.length > 0) {
          const rows = await this.store<TransferDoc>("transfers").find({
            _id: { $in: uncounted },
          });
          const counted = new Set(rows.map(r => r._id));
          for (const id of uncounted) {
            if (counted.has(id)) continue;
            fresh.push(transferKey(id));
            transfers++;
          }
        }
        const checked = new Set(accounts);
        for (const key of pending) {
          const k = parseStatsKey(key);
          if (k?.kind === "holder") checked.add(k.account);
        }
        const found = await Promise.all(
          [...checked].map(account => balances.findOne({ _id: `${tokenId}/${account}` })),
        );
        [...checked].forEach((account, i) => {
          const b = found[i];
          const flip = b && holderFlip(b.amount, b.flips ?? 0);
          if (!flip || pending.has(holderKey(account, flip.flip))) return;
          fresh.push(holderKey(account, flip.flip));
          holders += flip.delta;
        });

        if (fresh.length > 0) {
          const applied = await views.updateOne(
            { _id: tokenId, rev: view.rev },
            {
              $set: {
                ...viewStats(
                  view.holders + holders,
                  view.transfers + transfers,
                  this.settings.featuredMinHolders,
                ),
                rev: view.rev + 1,
              },
              $push: { pending: { $each: fresh } },
            },
          );
          if (!applied) continue; // another change came first: look again
        }

        const keys = [...pending, ...fresh];
        if (keys.length === 0) return;
        // Each key is its own document (a transfer row, one account's flips): side by side.
        await Promise.all(keys.map(key => this.commitStatsKey(tokenId, key)));
        await views.updateOne({ _id: tokenId }, { $pull: { pending: { $in: keys } } });
        // A balance may have changed again while its flip was on its way: look once more.
        if (!keys.some(k => parseStatsKey(k)?.kind === "holder")) return;
        transferIds = [];
      }
      throw new Error(`Stats of ${tokenId} are too contended; the event will be redelivered`);
    },

    /** Step 2 for one key: idempotent, so anyone may finish anyone's key. */
    async commitStatsKey(tokenId: string, key: string): Promise<void> {
      const k = parseStatsKey(key);
      if (k?.kind === "transfer") {
        try {
          await this.store<TransferDoc>("transfers").insert({ _id: k.transferId, tokenId });
        } catch (err) {
          if (!(err instanceof DuplicateKeyError)) throw err;
        }
      } else if (k?.kind === "holder") {
        // Fails only when this flip is already recorded.
        await this.store<BalanceDoc>("balances").updateOne(
          { _id: `${tokenId}/${k.account}`, flips: k.flip - 1 },
          { $set: { flips: k.flip } },
        );
      } else {
        this.logger.warn({ tokenId, key }, "Unknown stats key dropped");
      }
    },

    /**
     * At start-up, before the channels are consumed: views written by the recounting
     * version (no `rev`) get exact counts and their balances their `flips` once; views
     * with changes left pending by a crash are finished.
     */
    async upgradeStats(): Promise<void> {
      const views = this.store<ViewDoc>("views");
      const balances = this.store<BalanceDoc>("balances");
      const old = await views.find({ rev: { $exists: false } });
      if (old.length > 0) {
        await balances.update({ flips: { $exists: false }, amount: "0" }, { $set: { flips: 0 } });
        await balances.update({ flips: { $exists: false } }, { $set: { flips: 1 } });
        for (const v of old) {
          const [holders, transfers] = await Promise.all([
            balances.count({ tokenId: v._id, amount: { $ne: "0" } }),
            this.store<TransferDoc>("transfers").count({ tokenId: v._id }),
          ]);
          await views.updateOne(
            { _id: v._id, rev: { $exists: false } },
            {
              $set: {
                ...viewStats(holders, transfers, this.settings.featuredMinHolders),
                rev: 0,
                pending: [],
              },
              $unset: { statsSeq: true, statsAt: true },
            },
          );
        }
        this.logger.info({ views: old.length }, "Catalog stats upgraded to incremental");
      }
      for (const v of await views.find({ "pending.0": { $exists: true } }))
        await this.settleStats(v._id, [], []);
    },

    /**
     * Drops the changed tokens' own entries now, and has the list entries cleaned: right
     * away when no clean ran in the last window, else once the window is over.
     */
    async cleanCache(tokenIds: string[]): Promise<void> {
      const cacher = this.broker.cacher;
      if (!cacher) return;
      // Redis refuses DEL without keys.
      if (tokenIds.length > 0) await cacher.del(tokenIds.map(getCacheKey));
      for (const id of tokenIds) this.cleanIds.add(id);
      if (this.cleanTimer) return; // the waiting clean will take these too
      const wait = this.lastCleanAt + cleanWindowMs - Date.now();
      if (wait <= 0) {
        await this.flushClean();
        return;
      }
      this.cleanTimer = setTimeout(() => {
        this.cleanTimer = null;
        this.flushClean().catch(err => this.logger.warn({ err }, "Catalog cache clean failed"));
      }, wait);
      this.cleanTimer.unref();
    },

    /** One clean of the list entries and the tokens changed since the last, and its re-clean. */
    async flushClean(): Promise<void> {
      const cacher = this.broker.cacher;
      if (!cacher) return;
      const keys = [...this.cleanIds].map(getCacheKey);
      this.cleanIds.clear();
      this.lastCleanAt = Date.now();
      const clean = async () => {
        await Promise.all([
          cacher.clean("catalog.list:**"),
          keys.length > 0 ? cacher.del(keys) : undefined,
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
    this.transferBatches = new KeyedBatcher((tokenId, events) =>
      this.applyTransfers(tokenId, events),
    );
    this.cleanTimers = new Set();
    this.cleanIds = new Set();
    this.cleanTimer = null;
    this.lastCleanAt = 0;
  },

  /** Runs after DbMixin's `started` (mixins first) and before the channels subscribe. */
  async started() {
    await this.upgradeStats();
  },

  async stopped() {
    if (this.cleanTimer) clearTimeout(this.cleanTimer);
    this.cleanTimer = null;
    for (const t of this.cleanTimers) clearTimeout(t);
    this.cleanTimers.clear();
  },
};

export default CatalogService;
