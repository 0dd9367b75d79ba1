import { nameParam, symbolParam, tokenMetadataProps } from "../lib/shared/params";
import { repeat } from "../lib/shared/repeat";
import type { Context, Service, ServiceSchema } from "moleculer";
import type { DbMethods, DbSettings, DbVars } from "../mixins/db.mixin";
import { storesWithOutbox, type OutboxMethods, type OutboxVars } from "../mixins/outbox.mixin";
import { amountRule } from "../lib/shared/amount";
import { callerKey } from "../lib/shared/caller-key";
import { created, requireUserId, type GatewayContext } from "../lib/shared/context";
import { envInt } from "../lib/shared/env";
import { notFound, validationError } from "../lib/shared/errors";
import { newId } from "../lib/shared/ids";
import { LAUNCH, LAUNCH_SAGA, type LaunchInput } from "../lib/sagas/launch-saga";
import { fingerprint } from "../lib/tokens/ledger";
import { PURCHASE, PURCHASE_PARAMS, PURCHASE_SAGA } from "../lib/sagas/purchase-saga";
import {
  ACCEPT_OFFER,
  ACCEPT_OFFER_SAGA,
  CLOSE_OFFER,
  CLOSE_OFFER_SAGA,
  MAKE_OFFER,
  MAKE_OFFER_SAGA,
  ACCEPT_OFFER_PARAMS,
  CLOSE_OFFER_PARAMS,
  MAKE_OFFER_PARAMS,
  type AcceptOfferInput,
  type CloseOfferInput,
  type MakeOfferInput,
} from "../lib/sagas/offer-sagas";
import { AUCTION_SAGAS, AUCTION_SAGA_STARTS } from "../lib/sagas/auction-sagas";
import type { SagaCall, SagaDefinition } from "../lib/sagas/saga-definition";
import type { OfferSagaParams, PurchaseParams } from "../lib/sagas/contract";
import { SagaEngine } from "../lib/sagas/saga-engine";
import {
  SAGA_COLLECTIONS,
  isFinal,
  toSaga,
  toSagaSummary,
  type Saga,
  type SagaDoc,
  type SagaSummary,
} from "../lib/sagas/saga-log";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * sagas: the orchestrator of changes that span services (docs/architecture.md), today the token
 * launch (lib/sagas/launch-saga.ts): POST /api/launches starts one, GET /api/launches[/:id]
 * show the caller's; and the NFT purchase (lib/sagas/purchase-saga.ts), started by market.buy. The engine (lib/sagas/saga-engine.ts) keeps each saga's log in this
 * service's `sagas` collection before and after every step, undoes what a failure left
 * half done, and takes over the sagas of a node that died once their lease expires;
 * their ends go out as sagas.* events through this service's outbox. This file holds
 * the params, the handlers and the wiring.
 */

interface SagasOwnSettings {
  /** How long POST /api/launches waits for the saga to end before it answers 202 (ms). */
  waitMs: number;
  /** How long a saga is its node's without a write before another node may take it over (ms). */
  leaseMs: number;
  /** How often sagas whose lease expired are taken over (ms; 0: only at start). */
  recoveryIntervalMs: number;
  /** Timeout of each step's call (ms). */
  stepTimeoutMs: number;
  /** Calls of a step whose failures are retryable before the saga gives up on it. */
  stepAttempts: number;
  /** Calls of a compensation before the saga ends `failed`. */
  compensationAttempts: number;
  /** The first wait between retries (ms), doubling up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
  /** Ended sagas are forgotten after this (ms). */
  retentionMs: number;
  /** How often they are pruned (ms). */
  pruneIntervalMs: number;
}

type SagasSettings = SagasOwnSettings & DbSettings;

export interface SagasVars {
  engine: SagaEngine;
  stopRecovery: () => void;
  lastPrune: number;
}

interface SagasMethods {
  callStep: SagaCall;
  sweep(all?: boolean): Promise<void>;
  mine(ctx: GatewayContext<IdParams>, type: string): Promise<SagaDoc>;
  discovered(services: string[], maxMs: number): Promise<void>;
  runOffer(type: string, userId: string, p: OfferSagaParams): Promise<Saga>;
}

type SagasThis = Service<SagasSettings> &
  SagasMethods &
  SagasVars &
  DbMethods &
  Pick<DbVars, "database"> &
  OutboxMethods &
  OutboxVars;

export type LaunchParams = LaunchInput;
export type { PurchaseParams };
export interface IdParams {
  id: string;
}
export interface ListParams {
  limit?: number;
  offset?: number;
}

const DEFINITIONS = [
  LAUNCH_SAGA,
  PURCHASE_SAGA,
  MAKE_OFFER_SAGA,
  ACCEPT_OFFER_SAGA,
  CLOSE_OFFER_SAGA,
  ...AUCTION_SAGAS,
];
/** The services each kind of saga calls: recovery waits (a while) for them to be discovered. */
const SERVICES_OF: Record<string, string[]> = Object.fromEntries(
  DEFINITIONS.map(d => [d.type, [...new Set(d.steps.map(s => s.action.split(".")[0]))]]),
);

const SagasService: ServiceSchema<
  SagasOwnSettings,
  SagasMethods & DbMethods & OutboxMethods,
  DbVars & OutboxVars & SagasVars,
  SagasThis
> = {
  name: "sagas",
  mixins: [...storesWithOutbox(SAGA_COLLECTIONS)],

  settings: {
    // Under the gateway's request timeout (REQUEST_TIMEOUT, 3 s), so a slow launch is a 202.
    waitMs: envInt("SAGAS_WAIT_MS", 2000),
    leaseMs: envInt("SAGAS_LEASE_MS", 15_000),
    recoveryIntervalMs: envInt("SAGAS_RECOVERY_INTERVAL_MS", 5000),
    stepTimeoutMs: envInt("SAGAS_STEP_TIMEOUT_MS", 5000),
    // 8 calls with doubling backoff: a step's service may be gone for about 20 s.
    stepAttempts: envInt("SAGAS_STEP_ATTEMPTS", 8),
    compensationAttempts: envInt("SAGAS_COMPENSATION_ATTEMPTS", 10),
    backoffMs: envInt("SAGAS_BACKOFF_MS", 200),
    maxBackoffMs: envInt("SAGAS_MAX_BACKOFF_MS", 10_000),
    retentionMs: envInt("SAGAS_RETENTION_MS", 30 * 24 * 3600_000),
    pruneIntervalMs: envInt("SAGAS_PRUNE_INTERVAL_MS", 10 * 60_000),
  },

  actions: {
    launch: {
      openapi: {
        summary: "Launch a token (a saga)",
        status: 201,
        alsoStatus: [202],
        response: schemas.Saga,
      },
      params: {
        $$strict: "remove",
        token: {
          type: "object",
          strict: "remove",
          props: {
            name: nameParam,
            symbol: symbolParam,
            decimals: { type: "number", integer: true, min: 0, max: 18 },
            initialSupply: amountRule(),
            metadata: {
              type: "object",
              optional: true,
              strict: "remove",
              props: tokenMetadataProps,
            },
          },
        },
        liquidity: { type: "object", strict: "remove", props: { amount: amountRule() } },
        marketing: {
          type: "object",
          optional: true,
          strict: "remove",
          props: { budget: amountRule({ optional: true }) },
        },
      },
      async handler(ctx: GatewayContext<LaunchParams>): Promise<Saga> {
        const userId = requireUserId(ctx);
        const { token, liquidity, marketing } = ctx.params;
        const input: LaunchInput = { token, liquidity, ...(marketing ? { marketing } : {}) };
        const started = await this.engine.start(
          LAUNCH,
          userId,
          callerKey(ctx),
          fingerprint([JSON.stringify(input)]),
          input,
        );
        const current = (await this.engine.wait(started._id, this.settings.waitMs)) ?? started;
        const location = `/api/launches/${current._id}`;
        if (isFinal(current)) return created(ctx, location, toSaga(current));
        // Still running: its Location tells how it ends (moleculer-web sends $location on 201 only).
        ctx.meta.$statusCode = 202;
        ctx.meta.$responseHeaders = { ...ctx.meta.$responseHeaders, Location: location };
        return toSaga(current);
      },
    },

    /**
     * Internal (market.buy): runs an NFT purchase (lib/sagas/purchase-saga.ts) once per key and
     * answers the saga when it ended, or as it is after `waitMs`.
     */
    purchase: {
      visibility: "public",
      params: PURCHASE_PARAMS,
      async handler(ctx: Context<PurchaseParams>): Promise<Saga> {
        const { input, key } = ctx.params;
        // Its payouts only go forward once the NFT moved: a share below 0 could never be paid.
        if (BigInt(input.royalty) > BigInt(input.price))
          throw validationError("input.royalty", "must not exceed the price");
        const print = fingerprint([JSON.stringify(input)]);
        const started = await this.engine.start(PURCHASE, input.buyerId, key, print, input);
        return toSaga((await this.engine.wait(started._id, this.settings.waitMs)) ?? started);
      },
    },

    /** The market's offers (lib/sagas/offer-sagas.ts): made, accepted, closed. */
    offer: {
      visibility: "public",
      params: MAKE_OFFER_PARAMS,
      handler(ctx: Context<OfferSagaParams<MakeOfferInput>>): Promise<Saga> {
        return this.runOffer(MAKE_OFFER, ctx.params.input.makerId, ctx.params);
      },
    },

    offerAccept: {
      visibility: "public",
      params: ACCEPT_OFFER_PARAMS,
      handler(ctx: Context<OfferSagaParams<AcceptOfferInput>>): Promise<Saga> {
        const { input } = ctx.params;
        if (BigInt(input.royalty) > BigInt(input.price))
          throw validationError("input.royalty", "must not exceed the price");
        return this.runOffer(ACCEPT_OFFER, input.sellerId, ctx.params);
      },
    },

    offerClose: {
      visibility: "public",
      params: CLOSE_OFFER_PARAMS,
      handler(ctx: Context<OfferSagaParams<CloseOfferInput>>): Promise<Saga> {
        return this.runOffer(CLOSE_OFFER, ctx.params.input.makerId, ctx.params);
      },
    },

    /** The market's auctions (lib/sagas/auction-sagas.ts): started, bid on, settled, cancelled. */
    ...Object.fromEntries(
      Object.entries(AUCTION_SAGA_STARTS).map(([name, start]) => [
        name,
        {
          visibility: "public" as const,
          params: start.params,
          handler(this: SagasThis, ctx: Context<OfferSagaParams<never>>): Promise<Saga> {
            const user = (start.user as (i: unknown) => string)(ctx.params.input);
            return this.runOffer(start.type, user, ctx.params);
          },
        },
      ]),
    ),

    list: {
      openapi: { summary: "The caller's launches", response: schemas.page(schemas.Saga) },
      params: {
        $$strict: "remove",
        limit: { type: "number", integer: true, convert: true, min: 1, max: 100, optional: true },
        offset: { type: "number", integer: true, convert: true, min: 0, optional: true },
      },
      async handler(ctx: GatewayContext<ListParams>) {
        const query = { userId: requireUserId(ctx), type: LAUNCH };
        const sagas = this.store<SagaDoc>("sagas");
        const [docs, total] = await Promise.all([
          sagas.find(query, {
            sort: { createdAt: -1, _id: -1 },
            limit: ctx.params.limit ?? 20,
            offset: ctx.params.offset ?? 0,
          }),
          sagas.count(query),
        ]);
        return { rows: docs.map(toSaga), total };
      },
    },

    /** Internal (the operator page, /ops): the latest sagas of every user, newest first. */
    recent: {
      visibility: "public",
      params: {
        $$strict: "remove",
        limit: { type: "number", integer: true, convert: true, min: 1, max: 100, optional: true },
      },
      async handler(ctx: Context<{ limit?: number }>): Promise<SagaSummary[]> {
        const docs = await this.store<SagaDoc>("sagas").find(
          {},
          { sort: { createdAt: -1, _id: -1 }, limit: ctx.params.limit ?? 20 },
        );
        return docs.map(toSagaSummary);
      },
    },

    get: {
      openapi: { summary: "A launch of the caller's", response: schemas.Saga },
      params: { $$strict: "remove", id: { type: "string", min: 1, max: 64 } },
      async handler(ctx: GatewayContext<IdParams>): Promise<Saga> {
        return toSaga(await this.mine(ctx, LAUNCH));
      },
    },

    /** A purchase of the caller's (the `sagaId` of POST …/buy): how it ended, and why. */
    getPurchase: {
      openapi: { summary: "A purchase of the caller's (its saga)", response: schemas.Saga },
      params: { $$strict: "remove", id: { type: "string", min: 1, max: 64 } },
      async handler(ctx: GatewayContext<IdParams>): Promise<Saga> {
        return toSaga(await this.mine(ctx, PURCHASE));
      },
    },
  },

  methods: {
    /** Starts an offer's saga once per key and waits for it (as a purchase does). */
    async runOffer(type: string, userId: string, p: OfferSagaParams): Promise<Saga> {
      const print = fingerprint([JSON.stringify(p.input)]);
      const started = await this.engine.start(type, userId, p.key, print, p.input);
      return toSaga((await this.engine.wait(started._id, this.settings.waitMs)) ?? started);
    },

    /** A step's call: the engine retries (and records each try), so the broker does not. */
    callStep(action, params, opts) {
      return this.broker.call(action, params, {
        meta: { ...opts.meta, idempotencyKey: opts.idempotencyKey },
        timeout: this.settings.stepTimeoutMs,
        retries: 0,
        // Keys the callees scope by caller are the sagas service's; logs carry the saga id.
        caller: this.fullName,
        requestID: opts.sagaId,
      });
    },

    /** Sagas whose node died, then (now and then) the ended ones past their retention. */
    async sweep(all = false) {
      await this.engine.recover(all);
      if (Date.now() - this.lastPrune < this.settings.pruneIntervalMs) return;
      this.lastPrune = Date.now();
      const pruned = await this.engine.prune(new Date(Date.now() - this.settings.retentionMs));
      if (pruned > 0) this.logger.info({ pruned }, "Ended sagas pruned");
    },

    /** The caller's saga of `type`; 404 for anyone else's, as for one that does not exist. */
    async mine(ctx: GatewayContext<IdParams>, type: string): Promise<SagaDoc> {
      const userId = requireUserId(ctx);
      const doc = await this.engine.find(ctx.params.id);
      // A purchase's saga is its buyer's (the user it runs for).
      if (!doc || doc.userId !== userId || doc.type !== type)
        throw notFound(type === LAUNCH ? "Launch" : "Purchase");
      return doc;
    },

    /** Resolves once a node of each service is known, after `maxMs` at most, or at stop. */
    async discovered(services: string[], maxMs: number): Promise<void> {
      const until = Date.now() + maxMs;
      const known = () => {
        const up = this.broker.registry.getServiceList({ onlyAvailable: true }).map(s => s.name);
        return services.every(s => up.includes(s));
      };
      while (!known() && Date.now() < until && !this.engine.stopped)
        await new Promise(resolve => setTimeout(resolve, 100).unref());
    },
  } satisfies SagasMethods & ThisType<SagasThis>,

  created() {
    this.stopRecovery = () => undefined;
    this.lastPrune = Date.now();
  },

  async started() {
    const outbox = this.openOutbox();
    const s = this.settings;
    this.engine = new SagaEngine(
      this.database,
      outbox,
      (action, params, opts) => this.callStep(action, params, opts),
      this.logger,
      {
        owner: `${this.broker.nodeID}/${newId("eng")}`,
        leaseMs: s.leaseMs,
        stepAttempts: s.stepAttempts,
        compensationAttempts: s.compensationAttempts,
        backoffMs: s.backoffMs,
        maxBackoffMs: s.maxBackoffMs,
      },
    );
    for (const d of DEFINITIONS) this.engine.define(d as SagaDefinition<unknown>);
    this.outbox.start();
    // Resumed once the services they call are known (or after a while, to retry anyway):
    // called before discovery, every step would fail and be retried. On SQLite files the
    // directory's lock proves nobody else drives this log: every unfinished saga is ours.
    const all = !s.db.mongoUri;
    // Only the services the unfinished sagas call: a cluster without the dex still resumes purchases.
    const unfinished = await this.store<SagaDoc>("sagas").find({ active: true });
    const needed = new Set(unfinished.flatMap(d => SERVICES_OF[d.type] ?? []));
    void this.discovered([...needed], 30_000)
      .then(() => this.sweep(all))
      .catch(err => this.logger.warn({ err }, "Saga recovery at start failed"))
      .finally(() => {
        if (this.engine.stopped) return;
        this.stopRecovery = repeat(
          s.recoveryIntervalMs,
          () => this.sweep(),
          err => this.logger.warn({ err }, "Saga recovery sweep failed"),
        );
      });
  },

  async stopped() {
    this.stopRecovery();
    await this.engine?.stop();
  },
};

export default SagasService;
