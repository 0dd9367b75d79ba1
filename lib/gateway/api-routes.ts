/**
 * The REST routes of the gateway (docs/api.md), by who may call them: the gateway's
 * logic is in services/api.service.ts, which mounts these under /api. Only `published`
 * actions belong here; internal ones (`public`) are never aliased. A new service adds its
 * routes to the tables below.
 */

import type { ApiKeyScope } from "../users/api-keys";

/** Needs a user (a bearer JWT). Listed before `PUBLIC` so /users/me wins over /users/:id. */
export const PRIVATE_ROUTES: Record<string, string> = {
  // API keys: a user token only (the scope table below closes them to keys).
  "POST keys": "users.createKey",
  "GET keys": "users.listKeys",
  "DELETE keys/:id": "users.deleteKey",

  "GET users/me": "users.me",
  "PATCH users/me": "users.updateMe",
  "POST users/me/wallets/challenge": "users.walletChallenge",
  "POST users/me/wallets": "users.linkWallet",
  "DELETE users/me/wallets/:address": "users.unlinkWallet",

  "POST tokens": "tokens.create",
  "PATCH tokens/:id/metadata": "tokens.updateMetadata",
  "POST tokens/:id/transfers": "tokens.transfer",
  "POST tokens/:id/approvals": "tokens.approve",
  "POST tokens/:id/transfers-from": "tokens.transferFrom",
  "GET me/balances": "tokens.myBalances",

  // The caller's history, kept forever (activity service).
  "GET me/activity": "activity.myActivity",

  "GET analytics/summary": "analytics.summary",

  // Token launches (sagas): a creator sees only their own.
  "POST launches": "sagas.launch",
  "GET launches": "sagas.list",
  "GET launches/:id": "sagas.get",

  // NFTs (ERC-721): the collection's owner mints; an NFT's owner (or approved) moves it.
  "POST collections": "nfts.createCollection",
  "POST collections/:id/nfts": "nfts.mint",
  "POST nfts/:id/approve": "nfts.approve",
  "POST nfts/:id/transfer": "nfts.transfer",

  // Marketplace: a purchase runs as a saga (sagas service) behind market.buy.
  "POST market/listings": "market.create",
  "DELETE market/listings/:id": "market.cancel",
  "POST market/listings/:id/buy": "market.buy",
  // The buyer's purchase: its saga tells how it ended (completed or compensated) and why.
  "GET market/purchases/:id": "sagas.getPurchase",

  // Webhooks: an owner's endpoints and their deliveries (others see 404).
  "POST webhooks": "webhooks.create",
  "GET webhooks": "webhooks.list",
  "GET webhooks/:id": "webhooks.get",
  "DELETE webhooks/:id": "webhooks.remove",
  "POST webhooks/:id/test": "webhooks.test",
  "GET webhooks/:id/deliveries": "webhooks.deliveries",
  "POST webhooks/:id/deliveries/:deliveryId/redeliver": "webhooks.redeliver",

  // Offers: escrowed when made, accepted by an owner of a matching NFT (a sale saga).
  "POST market/offers": "market.makeOffer",
  "POST market/offers/:id/accept": "market.acceptOffer",
  "DELETE market/offers/:id": "market.cancelOffer",
  // English auctions: the NFT held while one runs, bids escrowed, settled by a saga at the end.
  "POST market/auctions": "market.createAuction",
  "POST market/auctions/:id/bids": "market.bid",
  "DELETE market/auctions/:id": "market.cancelAuction",
};

/** Anyone may call these (a user, when known, is still passed on). */
export const PUBLIC_ROUTES: Record<string, string> = {
  "POST auth/register": "users.register",
  "GET users/:id": "users.get",

  // Reads of tokens come from the catalog (the CQRS read model) ...
  "GET tokens": "catalog.list",
  "GET tokens/:id": "catalog.get",
  // ... except balances and allowances, which must be exact: the write model answers.
  "GET tokens/:id/balances/:account": "tokens.balance",
  "GET tokens/:id/holders": "tokens.holders",
  "GET tokens/:id/allowances/:owner/:spender": "tokens.allowance",

  // Histories, kept forever, in cursor pages (activity service). A transfer's Location
  // answers here, before the history has it too (from the tokens journal).
  "GET tokens/:id/transfers": "activity.transfers",
  "GET tokens/:id/transfers/:transferId": "activity.transfer",
  "GET nfts/:id/activity": "activity.nftActivity",
  "GET collections/:id/activity": "activity.collectionActivity",

  "GET pools/:tokenId": "dex.get",

  // NFTs and listings are read from their owning services' own stores (docs/architecture.md).
  "GET collections": "nfts.listCollections",
  "GET collections/:id": "nfts.getCollection",
  // Market figures and traits of a collection come from the catalog (the read model).
  "GET collections/:id/stats": "catalog.collectionStats",
  "GET collections/:id/traits": "catalog.collectionTraits",
  "GET nfts": "nfts.list",
  "GET nfts/:id": "nfts.get",
  "GET market/listings": "market.list",
  "GET market/listings/:id": "market.get",
  "GET market/offers": "market.listOffers",
  "GET market/offers/:id": "market.getOffer",
  "GET market/auctions": "market.listAuctions",
  "GET market/auctions/:id": "market.getAuction",
};

/** Login alone: a stricter rate limit, and never retried (see the gateway). */
export const LOGIN_ROUTES: Record<string, string> = {
  "POST auth/login": "users.login",
};

/** The services the routes call: what the gateway's readiness waits for by default. */
export function routedServices(): string[] {
  const actions = [PRIVATE_ROUTES, PUBLIC_ROUTES, LOGIN_ROUTES].flatMap(r => Object.values(r));
  return [...new Set(actions.map(a => a.split(".")[0]))].sort();
}

/**
 * What an API key needs to call each route (docs/api.md "API keys"): reads `read`; token
 * transfers, approvals and transfers-from `transfer`; creating tokens and collections and
 * minting `mint`; listings and buying `market`. `null`: never with a key (keys, wallets,
 * the profile, logging in). A route missing here is closed to keys as well
 * (test/unit/gateway/api-routes.test.ts checks that every aliased route is listed), except
 * those under `webhooks`, which take the `webhooks` scope.
 */
export const KEY_ROUTE_SCOPES: Record<string, ApiKeyScope | null> = {
  "POST keys": null,
  "GET keys": null,
  "DELETE keys/:id": null,
  "GET users/me": "read",
  "PATCH users/me": null,
  "POST users/me/wallets/challenge": null,
  "POST users/me/wallets": null,
  "DELETE users/me/wallets/:address": null,
  "POST auth/register": null,
  "POST auth/login": null,

  "POST tokens": "mint",
  // The creator's metadata of a token is part of making it.
  "PATCH tokens/:id/metadata": "mint",
  "POST tokens/:id/transfers": "transfer",
  "POST tokens/:id/approvals": "transfer",
  "POST tokens/:id/transfers-from": "transfer",
  "GET me/balances": "read",
  "GET analytics/summary": "read",
  // A launch creates a token (and its pool).
  "POST launches": "mint",
  "GET launches": "read",
  "GET launches/:id": "read",
  "POST collections": "mint",
  "POST collections/:id/nfts": "mint",
  "POST nfts/:id/approve": "transfer",
  "POST nfts/:id/transfer": "transfer",
  "POST market/listings": "market",
  "DELETE market/listings/:id": "market",
  "POST market/listings/:id/buy": "market",
  "GET market/purchases/:id": "read",

  "GET users/:id": "read",
  "GET tokens": "read",
  "GET tokens/:id": "read",
  "GET tokens/:id/balances/:account": "read",
  "GET tokens/:id/holders": "read",
  "GET tokens/:id/allowances/:owner/:spender": "read",
  "GET pools/:tokenId": "read",
  "GET collections": "read",
  "GET collections/:id": "read",
  "GET nfts": "read",
  "GET nfts/:id": "read",
  "GET market/listings": "read",
  "GET market/listings/:id": "read",
  // The history (activity service).
  "GET me/activity": "read",
  "GET tokens/:id/transfers": "read",
  "GET tokens/:id/transfers/:transferId": "read",
  "GET nfts/:id/activity": "read",
  "GET collections/:id/activity": "read",
  // The market's offers and a collection's figures.
  "POST market/offers": "market",
  "POST market/offers/:id/accept": "market",
  "DELETE market/offers/:id": "market",
  "GET market/offers": "read",
  "GET market/offers/:id": "read",
  "POST market/auctions": "market",
  "POST market/auctions/:id/bids": "market",
  "DELETE market/auctions/:id": "market",
  "GET market/auctions": "read",
  "GET market/auctions/:id": "read",
  "GET collections/:id/stats": "read",
  "GET collections/:id/traits": "read",
};

/** What moleculer-web knows of the alias that matched a request. */
export interface MatchedAlias {
  method?: string;
  path?: string;
}

/** The matched alias as the tables name it: "POST tokens/:id/transfers". */
export const routeKeyOf = (alias: MatchedAlias): string =>
  `${alias.method ?? ""} ${(alias.path ?? "").replace(/^\/+/, "")}`;

/**
 * Routes whose answer carries a secret shown once (a new API key, a webhook's signing
 * secret): an Idempotency-Key is not honoured there, since keeping the answer would keep
 * the secret; a repeat makes a new one.
 */
export const SECRET_ANSWER_ROUTES: ReadonlySet<string> = new Set(["POST keys", "POST webhooks"]);

/** The scope a key needs for the route `"<METHOD> <path>"`; null: closed to keys. */
export function keyScopeOf(route: string): ApiKeyScope | null {
  const scope = KEY_ROUTE_SCOPES[route];
  if (scope !== undefined) return scope;
  return /^[A-Z]+ webhooks(\/|$)/.test(route) ? "webhooks" : null;
}
