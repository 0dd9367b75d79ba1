import { ACTIVITY_TYPES } from "../../events/activity";
import { named, type JsonSchema } from "./document";
import { API_KEY_SCOPES } from "../../users/api-keys";

/**
 * The shapes the API answers with, as JSON Schema 2020-12 (docs/api.md). Actions name
 * the one they return in their `openapi.response` (services/*.service.ts); lib/gateway/openapi/document.ts
 * puts each named one in the document's components once. Objects are closed
 * (`additionalProperties: false`): the contract test (test/integration/openapi.test.ts)
 * then fails on a field the server sends and this file does not describe, as well as on
 * one it describes and the server leaves out.
 */

export const str: JsonSchema = { type: "string" };
export const int: JsonSchema = { type: "integer" };
export const bool: JsonSchema = { type: "boolean" };
export const dateTime: JsonSchema = { type: "string", format: "date-time" };
export const nullable = (s: JsonSchema): JsonSchema => ({ anyOf: [s, { type: "null" }] });

/** A decimal string of base units (lib/shared/amount.ts). */
export const amount: JsonSchema = {
  type: "string",
  pattern: "^(0|[1-9][0-9]*)$",
  description: "decimal digits, base units, 0 … 2^256−1",
};

/** A closed object: every property required but those listed in `optional`. */
export function obj(props: Record<string, JsonSchema>, optional: string[] = []): JsonSchema {
  return {
    type: "object",
    properties: props,
    required: Object.keys(props).filter(k => !optional.includes(k)),
    additionalProperties: false,
  };
}

/** `{ rows: [...], total }` of a list (docs/api.md "Lists"). */
export const page = (row: JsonSchema): JsonSchema =>
  obj({ rows: { type: "array", items: row }, total: int });

export const Wallet = named("Wallet", obj({ address: str, chainId: int, linkedAt: dateTime }));

const userProps = {
  id: str,
  email: str,
  displayName: str,
  bio: str,
  avatarUrl: nullable(str),
  wallets: { type: "array", items: Wallet },
  createdAt: dateTime,
};
export const User = named("User", obj(userProps));
const { email: _email, ...profileProps } = userProps;
export const PublicProfile = named("PublicProfile", obj(profileProps));
export const Session = named("Session", obj({ user: User, token: str }));
export const WalletChallenge = named(
  "WalletChallenge",
  obj({ message: str, nonce: str, expiresAt: dateTime }),
);

const apiKeyProps = {
  id: str,
  name: str,
  scopes: {
    type: "array",
    items: { type: "string", enum: [...API_KEY_SCOPES] },
  },
  prefix: { type: "string", description: "the key's first 12 characters" },
  createdAt: dateTime,
};
/** An API key as lists show it: its prefix, never the key. */
export const ApiKey = named("ApiKey", obj(apiKeyProps));
export const ApiKeyPage = named("ApiKeyPage", page(ApiKey));
/** The answer to creating a key: the only one that carries `key`. */
export const CreatedApiKey = named(
  "CreatedApiKey",
  obj({
    ...apiKeyProps,
    key: { type: "string", pattern: "^mm_[A-Za-z0-9_-]{43}$", description: "shown only here" },
  }),
);

export const TokenMetadata = named(
  "TokenMetadata",
  obj({ description: str, imageUrl: str, website: str }, ["description", "imageUrl", "website"]),
);
const tokenProps = {
  id: str,
  name: str,
  symbol: str,
  decimals: int,
  totalSupply: amount,
  creatorId: str,
  metadata: TokenMetadata,
  createdAt: dateTime,
};
export const Token = named("Token", obj(tokenProps));
/** A token of the catalog (the read model); catalog v2 adds `catalogVersion: 2`. */
export const CatalogToken = named(
  "CatalogToken",
  obj(
    {
      ...tokenProps,
      featured: bool,
      stats: obj({ holders: int, transfers: int }),
      catalogVersion: int,
    },
    ["catalogVersion"],
  ),
);
export const CatalogPage = named(
  "CatalogPage",
  obj({ rows: { type: "array", items: CatalogToken }, total: int, catalogVersion: int }, [
    "catalogVersion",
  ]),
);
export const Transfer = named(
  "Transfer",
  obj({ id: str, tokenId: str, from: str, to: str, amount, createdAt: dateTime }),
);
export const Balance = named("Balance", obj({ tokenId: str, account: str, amount }));
export const Holder = named("Holder", obj({ account: str, amount }));
export const Allowance = named(
  "Allowance",
  obj({ tokenId: str, owner: str, spender: str, amount }),
);
export const AllowanceAmount = named("AllowanceAmount", obj({ amount }));
export const MyBalance = named("MyBalance", obj({ tokenId: str, symbol: str, amount }));

export const Pool = named(
  "Pool",
  obj({ tokenId: str, account: str, reserve: amount, providerId: str }),
);

const sagaError = obj({ type: str, message: str });
export const Saga = named(
  "Saga",
  obj(
    {
      id: str,
      type: str,
      state: { enum: ["running", "completed", "compensating", "compensated", "failed"] },
      steps: {
        type: "array",
        items: obj(
          {
            name: str,
            state: {
              enum: [
                "pending",
                "running",
                "done",
                "failed",
                "compensating",
                "compensated",
                "compensation-failed",
              ],
            },
            result: {},
            error: sagaError,
          },
          ["result", "error"],
        ),
      },
      result: {},
      error: obj({ step: str, type: str, message: str }),
      createdAt: dateTime,
      updatedAt: dateTime,
    },
    ["result", "error"],
  ),
);

export const Collection = named(
  "Collection",
  obj({
    id: str,
    name: str,
    symbol: str,
    ownerId: str,
    maxSupply: nullable(int),
    royaltyBps: int,
    minted: int,
    createdAt: dateTime,
  }),
);
export const Nft = named(
  "Nft",
  obj({
    id: str,
    collectionId: str,
    serial: int,
    ownerId: str,
    approved: nullable(str),
    metadata: obj(
      {
        name: str,
        description: str,
        image: str,
        attributes: {
          type: "array",
          items: obj({ trait_type: str, value: { anyOf: [str, { type: "number" }] } }),
        },
      },
      ["description", "image", "attributes"],
    ),
    mintedAt: dateTime,
  }),
);
export const Listing = named(
  "Listing",
  obj({
    id: str,
    nftId: str,
    collectionId: str,
    sellerId: str,
    priceTokenId: str,
    price: amount,
    state: { enum: ["active", "reserved", "sold", "cancelled", "expired"] },
    expiresAt: nullable(dateTime),
    createdAt: dateTime,
    updatedAt: dateTime,
  }),
);
const byToken: JsonSchema = { type: "object", additionalProperties: amount };
const windows = (s: JsonSchema) => obj({ "1d": s, "7d": s, "30d": s, all: s });
export const CollectionStats = named(
  "CollectionStats",
  obj({
    collectionId: str,
    supply: int,
    owners: int,
    listed: int,
    floor: byToken,
    volume: windows(byToken),
    sales: windows(int),
  }),
);
export const CollectionTraits = named("CollectionTraits", {
  type: "object",
  additionalProperties: { type: "object", additionalProperties: int },
});
const trait: JsonSchema = obj({
  trait_type: str,
  value: { anyOf: [str, { type: "number" }] },
});
export const Offer = named(
  "Offer",
  obj(
    {
      id: str,
      makerId: str,
      nftId: nullable(str),
      collectionId: str,
      traits: { type: "array", items: trait },
      priceTokenId: str,
      price: amount,
      state: { enum: ["active", "accepted", "cancelled", "expired"] },
      expiresAt: nullable(dateTime),
      soldNftId: str,
      sellerId: str,
      createdAt: dateTime,
      updatedAt: dateTime,
    },
    ["soldNftId", "sellerId"],
  ),
);
export const OfferAccepted = named(
  "OfferAccepted",
  obj({
    offer: Offer,
    sale: obj({
      nftId: str,
      sellerId: str,
      buyerId: str,
      priceTokenId: str,
      price: amount,
      royalty: amount,
    }),
  }),
);
const auctionBid = obj({ bidderId: str, amount: amount });
export const Auction = named(
  "Auction",
  obj({
    id: str,
    nftId: str,
    collectionId: str,
    sellerId: str,
    priceTokenId: str,
    reservePrice: amount,
    minIncrementBps: int,
    endsAt: dateTime,
    state: { enum: ["active", "settled", "unsold", "cancelled"] },
    highestBid: nullable(auctionBid),
    winnerId: nullable(str),
    createdAt: dateTime,
    updatedAt: dateTime,
  }),
);
export const AuctionBid = named(
  "AuctionBid",
  obj({ id: str, auctionId: str, bidderId: str, amount: amount, auction: Auction }),
);
export const Purchase = named("Purchase", obj({ listing: Listing, sagaId: str }));

const counts = (keys: string[]) => obj(Object.fromEntries(keys.map(k => [k, int])));
const volumes: JsonSchema = { type: "object", additionalProperties: amount };
export const AnalyticsSummary = named(
  "AnalyticsSummary",
  obj({
    tokens: int,
    transfers: int,
    nftsMinted: int,
    sales: int,
    launches: counts(["completed", "compensated", "failed"]),
    volumeByToken: volumes,
    salesVolumeByToken: volumes,
  }),
);

/** A row of the activity history (docs/api.md "Activity"); `data` depends on `type`. */
export const ActivityRow = named(
  "ActivityRow",
  obj(
    {
      id: str,
      cursor: str,
      type: { enum: [...ACTIVITY_TYPES] },
      at: dateTime,
      actorId: str,
      tokenId: str,
      nftId: str,
      collectionId: str,
      data: { type: "object", additionalProperties: true },
    },
    ["tokenId", "nftId", "collectionId"],
  ),
);
/** `{ rows, next }` of a cursor list: `next` is null on the last page. */
export const cursorPage = (row: JsonSchema): JsonSchema =>
  obj({ rows: { type: "array", items: row }, next: nullable(str) });
export const ActivityPage = named("ActivityPage", cursorPage(ActivityRow));
/** A transfer as the activity history keeps it; `cursor` is absent before it is recorded. */
export const TransferEntry = named(
  "TransferEntry",
  obj(
    {
      id: str,
      tokenId: str,
      from: str,
      to: str,
      amount,
      spender: str,
      createdAt: dateTime,
      cursor: str,
    },
    ["spender", "cursor"],
  ),
);
export const TransferPage = named("TransferPage", cursorPage(TransferEntry));
const webhookProps = {
  id: str,
  url: str,
  events: { type: "array", items: str },
  description: nullable(str),
  enabled: bool,
  disabledReason: nullable(str),
  createdAt: dateTime,
};
export const Webhook = named("Webhook", obj(webhookProps));
export const WebhookCreated = named(
  "WebhookCreated",
  obj({ ...webhookProps, secret: { type: "string", pattern: "^whsec_" } }),
);
export const WebhookDelivery = named(
  "WebhookDelivery",
  obj({
    id: str,
    eventId: str,
    type: str,
    state: { type: "string", enum: ["pending", "delivered", "failed"] },
    attempts: int,
    lastStatus: nullable(int),
    lastError: nullable(str),
    nextAttemptAt: nullable(dateTime),
    createdAt: dateTime,
    deliveredAt: nullable(dateTime),
  }),
);
export const WebhookDeliveries = named(
  "WebhookDeliveries",
  obj({ rows: { type: "array", items: WebhookDelivery }, next: nullable(str) }),
);
