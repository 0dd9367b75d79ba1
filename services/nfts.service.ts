import {
  accountParam,
  idParam,
  nameParam,
  nftMetadataParam,
  pageParams,
  symbolParam,
} from "../lib/shared/params";
import type { Context, Service, ServiceSchema } from "moleculer";
import type { DbMethods, DbVars } from "../mixins/db.mixin";
import { storesWithOutbox, type OutboxMethods, type OutboxVars } from "../mixins/outbox.mixin";
import {
  AccountsMixin,
  type AccountsMethods,
  type AccountsSettings,
} from "../mixins/accounts.mixin";
import { callerKey } from "../lib/shared/caller-key";
import { validationError } from "../lib/shared/errors";
import { created, requireUserId, type GatewayContext } from "../lib/shared/context";
import type { Collection, Nft, NftMetadata } from "../lib/events/nfts";
import { NFT_COLLECTIONS, NftRegistry, type NewCollection } from "../lib/nfts/nft-registry";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * nfts: the write model of NFT collections and their tokens (ERC-721 semantics). The
 * domain lives in lib/nfts/nft-registry.ts; this file holds params, account resolution and
 * wiring. Lists are served here from the service's own store (indexed by owner and
 * collection): the owner of the data answers its reads, no read model needed yet.
 */

type NftsOwnSettings = object;
type NftsSettings = NftsOwnSettings & AccountsSettings;

interface NftsVars {
  registry: NftRegistry;
}

interface NftsMethods {
  ownerFilter(ctx: Context, owner: string | undefined): Promise<string | null | undefined>;
}

type NftsThis = Service<NftsSettings> &
  NftsMethods &
  NftsVars &
  DbMethods &
  DbVars &
  OutboxVars &
  OutboxMethods &
  AccountsMethods;

export type CreateCollectionParams = NewCollection;
export interface IdParams {
  id: string;
}
export interface ListParams {
  limit: number;
  offset: number;
}
export interface ListCollectionsParams extends ListParams {
  owner?: string;
}
export interface MintParams {
  id: string;
  to?: string;
  metadata: NftMetadata;
}
export interface ListNftsParams extends ListParams {
  owner?: string;
  collection?: string;
  /** trait_type → value; every one must match. */
  traits?: Record<string, string>;
  sort: "recent" | "serial" | "price";
}
export interface ApproveParams {
  id: string;
  spender: string | null;
}
export interface TransferParams {
  id: string;
  to: string;
}
export interface TransferFromParams {
  id: string;
  from: string;
  to: string;
  idempotencyKey: string;
  /** The sale holding the NFT (nfts.lock): only its moves go through. */
  lock?: string;
}
export interface LockParams {
  id: string;
  /** Who must own the NFT for the sale to hold it (the seller). */
  owner?: string;
  lock: string;
}

const NftsService: ServiceSchema<
  NftsOwnSettings,
  NftsMethods & DbMethods & OutboxMethods & AccountsMethods,
  DbVars & OutboxVars & NftsVars,
  NftsThis
> = {
  name: "nfts",
  mixins: [...storesWithOutbox(NFT_COLLECTIONS), AccountsMixin],

  actions: {
    createCollection: {
      openapi: { summary: "Create a collection", status: 201, response: schemas.Collection },
      params: {
        $$strict: "remove",
        name: nameParam,
        symbol: symbolParam,
        maxSupply: { type: "number", integer: true, min: 1, optional: true },
        royaltyBps: { type: "number", integer: true, min: 0, max: 10_000, optional: true },
      },
      async handler(ctx: GatewayContext<CreateCollectionParams>): Promise<Collection> {
        const c = await this.registry.createCollection(
          requireUserId(ctx),
          callerKey(ctx),
          ctx.params,
        );
        return created(ctx, `/api/collections/${c.id}`, c);
      },
    },

    listCollections: {
      openapi: { summary: "Collections, newest first", response: schemas.page(schemas.Collection) },
      params: { $$strict: "remove", owner: { ...accountParam, optional: true }, ...pageParams },
      async handler(ctx: Context<ListCollectionsParams>) {
        const owner = await this.ownerFilter(ctx, ctx.params.owner);
        if (owner === null) return { rows: [], total: 0 };
        return this.registry.listCollections(owner, ctx.params.limit, ctx.params.offset);
      },
    },

    getCollection: {
      openapi: { summary: "A collection", response: schemas.Collection },
      params: { $$strict: "remove", id: idParam },
      handler(ctx: Context<IdParams>): Promise<Collection> {
        return this.registry.collection(ctx.params.id);
      },
    },

    mint: {
      openapi: {
        summary: "Mint an NFT (the collection's owner)",
        status: 201,
        response: schemas.Nft,
        errors: [403, 422],
      },
      params: {
        $$strict: "remove",
        id: idParam,
        to: { ...accountParam, optional: true },
        metadata: nftMetadataParam,
      },
      async handler(ctx: GatewayContext<MintParams>): Promise<Nft> {
        const caller = requireUserId(ctx);
        const to = ctx.params.to ? await this.resolveAccount(ctx, ctx.params.to, "to") : caller;
        const nft = await this.registry.mint(
          ctx.params.id,
          caller,
          callerKey(ctx),
          to,
          ctx.params.metadata,
        );
        return created(ctx, `/api/nfts/${nft.id}`, nft);
      },
    },

    list: {
      openapi: {
        summary:
          "NFTs: newest first, by serial, or by price; filtered by owner, collection, traits",
        response: schemas.page(schemas.Nft),
      },
      params: {
        $$strict: "remove",
        owner: { ...accountParam, optional: true },
        collection: { ...idParam, optional: true },
        traits: {
          type: "record",
          optional: true,
          key: { type: "string", min: 1, max: 64 },
          value: { type: "string", max: 256 },
        },
        sort: { type: "enum", values: ["recent", "serial", "price"], default: "recent" },
        ...pageParams,
      },
      async handler(ctx: Context<ListNftsParams>) {
        const owner = await this.ownerFilter(ctx, ctx.params.owner);
        if (owner === null) return { rows: [], total: 0 };
        const { collection, traits, sort, limit, offset } = ctx.params;
        if (traits !== undefined && Object.keys(traits).length > 8)
          throw validationError("traits", "at most 8 traits");
        if (traits === undefined && sort !== "price")
          return this.registry.list({ owner, collection, sort }, limit, offset);
        // Traits and prices are the catalog's (the read model of NFTs and listings); the
        // NFTs it names are answered as this service has them now.
        const found = await ctx.call<{ ids: string[]; total: number }, object>("catalog.nftIds", {
          collection,
          owner,
          traits,
          sort,
          limit,
          offset,
        });
        return { rows: await this.registry.byIds(found.ids), total: found.total };
      },
    },

    get: {
      openapi: { summary: "An NFT", response: schemas.Nft },
      params: { $$strict: "remove", id: idParam },
      handler(ctx: Context<IdParams>): Promise<Nft> {
        return this.registry.get(ctx.params.id);
      },
    },

    approve: {
      openapi: {
        summary: "Approve an account to transfer an NFT (or clear it)",
        response: schemas.Nft,
        errors: [403],
      },
      params: {
        $$strict: "remove",
        id: idParam,
        spender: { ...accountParam, nullable: true },
      },
      async handler(ctx: GatewayContext<ApproveParams>): Promise<Nft> {
        const caller = requireUserId(ctx);
        const spender =
          ctx.params.spender === null
            ? null
            : await this.resolveAccount(ctx, ctx.params.spender, "spender");
        return this.registry.approve(ctx.params.id, caller, callerKey(ctx), spender);
      },
    },

    transfer: {
      openapi: { summary: "Transfer an NFT", response: schemas.Nft, errors: [403] },
      params: { $$strict: "remove", id: idParam, to: accountParam },
      async handler(ctx: GatewayContext<TransferParams>): Promise<Nft> {
        const caller = requireUserId(ctx);
        const to = await this.resolveAccount(ctx, ctx.params.to, "to");
        return this.registry.transfer(ctx.params.id, caller, callerKey(ctx), to);
      },
    },

    /**
     * Internal (a sale's saga): moves the NFT only while `from` still owns it. The key is
     * required and scoped to the calling service, so a saga's retry moves it once.
     */
    transferFrom: {
      visibility: "public",
      params: {
        $$strict: "remove",
        id: idParam,
        from: accountParam,
        to: accountParam,
        idempotencyKey: { type: "string", min: 1, max: 255 },
        lock: { ...idParam, optional: true },
      },
      handler(ctx: Context<TransferFromParams>): Promise<Nft> {
        const { id, from, to, lock } = ctx.params;
        const key = `svc:${ctx.caller ?? "-"}:${ctx.params.idempotencyKey}`;
        return this.registry.transferFrom(id, from, key, to, lock);
      },
    },

    /**
     * Internal (a sale's saga): the sale holds the NFT while `owner` owns it; until it lets
     * go (unlock), no transfer or approval but the sale's own goes through.
     */
    lock: {
      visibility: "public",
      params: { $$strict: "remove", id: idParam, owner: accountParam, lock: idParam },
      handler(ctx: Context<Required<LockParams>>): Promise<Nft> {
        return this.registry.lock(ctx.params.id, ctx.params.owner, ctx.params.lock);
      },
    },

    /** Internal: the sale lets go of the NFT (it ended, or was undone). Idempotent. */
    unlock: {
      visibility: "public",
      params: { $$strict: "remove", id: idParam, lock: idParam },
      handler(ctx: Context<LockParams>): Promise<Nft> {
        return this.registry.unlock(ctx.params.id, ctx.params.lock);
      },
    },
  },

  methods: {
    /** `?owner=` as an account: its user id; null when it names nobody (an empty list). */
    async ownerFilter(ctx: Context, owner: string | undefined) {
      if (owner === undefined) return undefined;
      return this.findAccount(ctx, owner);
    },
  } satisfies NftsMethods & ThisType<NftsThis>,

  async started() {
    const outbox = this.openOutbox();
    this.registry = new NftRegistry(this.database, outbox);
    outbox.start();
  },
};

export default NftsService;
