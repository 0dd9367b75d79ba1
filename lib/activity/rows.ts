import { createHash } from "node:crypto";
import { ACTIVITY_TYPES, type ActivityRow, type ActivityType } from "../events/activity";
import {
  SAGA_EVENTS,
  TOKEN_EVENTS,
  type DomainEvent,
  type SagaEnded,
  type TokenApproved,
  type TokenCreated,
  type TokenTransferred,
} from "../events/domain";
import {
  MARKET_EVENTS,
  type AuctionEvent,
  type ListingEvent,
  type OfferEvent,
} from "../events/market";
import { NFT_EVENTS, type NftApproved, type NftMinted, type NftTransferred } from "../events/nfts";

/**
 * The activity rows of a domain event: one per account the event concerns, each in that
 * account's history (services/activity.service.ts keeps them forever). The first row of
 * an event is its lead row: the one NFT, collection and token lists show, so an event
 * between two accounts appears there once.
 */

/** A row before it is stored: no cursor yet (the store numbers rows as they commit). */
export interface DraftRow extends Omit<ActivityRow, "cursor"> {
  eventId: string;
  /** The event's first row (internal: answered by no route). */
  lead: boolean;
  /** A transfer's id on its lead row, so GET /api/tokens/:id/transfers/:transferId finds it. */
  transferId?: string;
}

/** The channels that yield rows: the activity service's consumer group reads these. */
export const ACTIVITY_CHANNELS = [
  TOKEN_EVENTS.created,
  TOKEN_EVENTS.transferred,
  TOKEN_EVENTS.approved,
  NFT_EVENTS.minted,
  NFT_EVENTS.transferred,
  NFT_EVENTS.approved,
  MARKET_EVENTS.listed,
  MARKET_EVENTS.cancelled,
  MARKET_EVENTS.sold,
  MARKET_EVENTS.expired,
  MARKET_EVENTS.offerMade,
  MARKET_EVENTS.offerAccepted,
  MARKET_EVENTS.offerCancelled,
  MARKET_EVENTS.offerExpired,
  MARKET_EVENTS.auctionStarted,
  MARKET_EVENTS.bidPlaced,
  MARKET_EVENTS.bidRefunded,
  MARKET_EVENTS.auctionSettled,
  MARKET_EVENTS.auctionUnsold,
  MARKET_EVENTS.auctionCancelled,
  SAGA_EVENTS.completed,
  SAGA_EVENTS.compensated,
] as const;

/**
 * A row's id: derived from the event, the account and the type (a collection owner who
 * sells their own NFT gets both `sale.sold` and `royalty` of one event), so a redelivery
 * of the event, however late, makes the same id and the unique index refuses the repeat.
 * It is the webhook-id of the row's deliveries.
 */
export function rowId(eventId: string, actorId: string, type: ActivityType): string {
  const h = createHash("sha256").update(`${eventId}\n${actorId}\n${type}`).digest("base64url");
  return `act_${h.slice(0, 22)}`;
}

/** A row as an event's mapping gives it; `at` defaults to the event's time. */
type Part = Omit<DraftRow, "id" | "eventId" | "at" | "lead"> & { at?: string };

/** The rows of `event` (none for an event no one's history shows, or a malformed one). */
export function rowsOf(event: DomainEvent): DraftRow[] {
  const parts = partsOf(event);
  const at = typeof event.occurredAt === "string" ? event.occurredAt : new Date().toISOString();
  const seen = new Set<string>();
  const rows: DraftRow[] = [];
  for (const p of parts) {
    if (typeof p.actorId !== "string" || p.actorId.length === 0) continue;
    const id = rowId(event.eventId, p.actorId, p.type);
    if (seen.has(id)) continue;
    seen.add(id);
    rows.push({ ...p, id, eventId: event.eventId, at: p.at ?? at, lead: rows.length === 0 });
  }
  return rows;
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

function partsOf(event: DomainEvent): Part[] {
  const d = event.data as Record<string, unknown>;
  switch (event.type) {
    case TOKEN_EVENTS.created: {
      const { token } = d as unknown as TokenCreated;
      if (!token) return [];
      const data = {
        tokenId: token.id,
        name: token.name,
        symbol: token.symbol,
        decimals: token.decimals,
        totalSupply: token.totalSupply,
      };
      const at = token.createdAt;
      return [{ type: "token.created", actorId: token.creatorId, tokenId: token.id, at, data }];
    }
    case TOKEN_EVENTS.transferred: {
      const t = d as unknown as TokenTransferred;
      const data = (): Record<string, unknown> => ({
        transferId: t.transferId,
        from: t.from,
        to: t.to,
        amount: t.amount,
        ...(t.spender !== undefined ? { spender: t.spender } : {}),
      });
      const at = t.createdAt;
      const out: Part = {
        type: "transfer.out",
        actorId: t.from,
        tokenId: t.tokenId,
        transferId: t.transferId,
        at,
        data: data(),
      };
      // A transfer to oneself is one row.
      if (t.from === t.to) return [out];
      return [out, { type: "transfer.in", actorId: t.to, tokenId: t.tokenId, at, data: data() }];
    }
    case TOKEN_EVENTS.approved: {
      const a = d as unknown as TokenApproved;
      const data = (): Record<string, unknown> => ({
        tokenId: a.tokenId,
        owner: a.owner,
        spender: a.spender,
        amount: a.amount,
      });
      return [
        { type: "approval", actorId: a.owner, tokenId: a.tokenId, data: data() },
        { type: "approval", actorId: a.spender, tokenId: a.tokenId, data: data() },
      ];
    }
    case NFT_EVENTS.minted: {
      const { nft } = d as unknown as NftMinted;
      if (!nft) return [];
      const data = {
        nftId: nft.id,
        collectionId: nft.collectionId,
        serial: nft.serial,
        name: nft.metadata?.name,
        to: nft.ownerId,
      };
      return [
        {
          type: "nft.minted",
          actorId: nft.ownerId,
          nftId: nft.id,
          collectionId: nft.collectionId,
          at: nft.mintedAt,
          data,
        },
      ];
    }
    case NFT_EVENTS.transferred: {
      const t = d as unknown as NftTransferred;
      const data = (): Record<string, unknown> => ({
        nftId: t.nftId,
        collectionId: t.collectionId,
        from: t.from,
        to: t.to,
      });
      const ids = { nftId: t.nftId, collectionId: t.collectionId };
      const out: Part = { type: "nft.transferred.out", actorId: t.from, ...ids, data: data() };
      if (t.from === t.to) return [out];
      return [out, { type: "nft.transferred.in", actorId: t.to, ...ids, data: data() }];
    }
    case NFT_EVENTS.approved: {
      const a = d as unknown as NftApproved;
      const data = (): Record<string, unknown> => ({
        nftId: a.nftId,
        owner: a.owner,
        spender: a.approved,
      });
      const parts: Part[] = [{ type: "approval", actorId: a.owner, nftId: a.nftId, data: data() }];
      if (a.approved)
        parts.push({ type: "approval", actorId: a.approved, nftId: a.nftId, data: data() });
      return parts;
    }
    case MARKET_EVENTS.listed:
    case MARKET_EVENTS.cancelled:
    case MARKET_EVENTS.expired:
    case MARKET_EVENTS.sold:
      return listingParts(event.type, d as unknown as ListingEvent);
    case MARKET_EVENTS.offerMade:
    case MARKET_EVENTS.offerAccepted:
    case MARKET_EVENTS.offerCancelled:
    case MARKET_EVENTS.offerExpired:
      return offerParts(event.type, d as unknown as OfferEvent);
    case MARKET_EVENTS.auctionStarted:
    case MARKET_EVENTS.bidPlaced:
    case MARKET_EVENTS.bidRefunded:
    case MARKET_EVENTS.auctionSettled:
    case MARKET_EVENTS.auctionUnsold:
    case MARKET_EVENTS.auctionCancelled:
      return auctionParts(event.type, d as unknown as AuctionEvent);
    case SAGA_EVENTS.completed:
    case SAGA_EVENTS.compensated: {
      const s = d as unknown as SagaEnded;
      if (s.sagaType !== "launch") return [];
      const type = event.type === SAGA_EVENTS.completed ? "launch.completed" : "launch.compensated";
      return [{ type, actorId: s.userId, data: { sagaId: s.sagaId, state: s.state } }];
    }
    default:
      return [];
  }
}

function listingParts(type: string, e: ListingEvent): Part[] {
  const l = e.listing;
  if (!l) return [];
  const base = {
    listingId: l.id,
    nftId: l.nftId,
    collectionId: l.collectionId,
    priceTokenId: l.priceTokenId,
    price: l.price,
    seller: l.sellerId,
  };
  const ids = { nftId: l.nftId, collectionId: l.collectionId, tokenId: l.priceTokenId };
  if (type === MARKET_EVENTS.listed)
    return [{ type: "listing.created", actorId: l.sellerId, ...ids, data: base }];
  if (type === MARKET_EVENTS.cancelled)
    return [{ type: "listing.cancelled", actorId: l.sellerId, ...ids, data: base }];
  if (type === MARKET_EVENTS.expired)
    return [{ type: "listing.expired", actorId: l.sellerId, ...ids, data: base }];
  const royalty = e.royalty && BigInt(e.royalty.amount) > 0n ? e.royalty : undefined;
  const sale = (): Record<string, unknown> => ({
    ...base,
    buyer: e.buyerId,
    ...(royalty ? { royalty: royalty.amount, royaltyTo: royalty.to } : {}),
  });
  const parts: Part[] = [{ type: "sale.sold", actorId: l.sellerId, ...ids, data: sale() }];
  if (str(e.buyerId))
    parts.push({ type: "sale.bought", actorId: e.buyerId!, ...ids, data: sale() });
  if (royalty)
    parts.push({
      type: "royalty",
      actorId: royalty.to,
      ...ids,
      data: { ...base, buyer: e.buyerId, amount: royalty.amount },
    });
  return parts;
}

/** An offer's rows: its maker's; once accepted, the seller's sale and the royalty too. */
function offerParts(type: string, e: OfferEvent): Part[] {
  const o = e.offer;
  if (!o) return [];
  const base = {
    offerId: o.id,
    nftId: o.soldNftId ?? o.nftId,
    collectionId: o.collectionId,
    traits: o.traits,
    priceTokenId: o.priceTokenId,
    price: o.price,
    maker: o.makerId,
  };
  const nftId = o.soldNftId ?? o.nftId ?? undefined;
  const ids = {
    ...(nftId ? { nftId } : {}),
    collectionId: o.collectionId,
    tokenId: o.priceTokenId,
  };
  const own: Record<string, ActivityType> = {
    [MARKET_EVENTS.offerMade]: "offer.made",
    [MARKET_EVENTS.offerAccepted]: "offer.accepted",
    [MARKET_EVENTS.offerCancelled]: "offer.cancelled",
    [MARKET_EVENTS.offerExpired]: "offer.expired",
  };
  const parts: Part[] = [{ type: own[type]!, actorId: o.makerId, ...ids, data: base }];
  if (type !== MARKET_EVENTS.offerAccepted || !str(o.sellerId)) return parts;
  const royalty = e.royalty && BigInt(e.royalty) > 0n ? e.royalty : undefined;
  const sale = {
    ...base,
    seller: o.sellerId,
    buyer: o.makerId,
    ...(royalty ? { royalty, royaltyTo: e.royaltyTo } : {}),
  };
  parts.push({ type: "sale.sold", actorId: o.sellerId!, ...ids, data: sale });
  if (royalty && str(e.royaltyTo))
    parts.push({
      type: "royalty",
      actorId: e.royaltyTo!,
      ...ids,
      data: { ...sale, amount: royalty },
    });
  return parts;
}

/**
 * An auction's rows: the seller's start and end (settled, unsold, cancelled), a bidder's
 * bid, the outbid bidder's refund, the winner's win and the collection owner's royalty.
 */
function auctionParts(type: string, e: AuctionEvent): Part[] {
  const a = e.auction;
  if (!a) return [];
  const base = {
    auctionId: a.id,
    nftId: a.nftId,
    collectionId: a.collectionId,
    priceTokenId: a.priceTokenId,
    reservePrice: a.reservePrice,
    seller: a.sellerId,
    endsAt: a.endsAt,
  };
  const ids = { nftId: a.nftId, collectionId: a.collectionId, tokenId: a.priceTokenId };
  if (type === MARKET_EVENTS.bidPlaced || type === MARKET_EVENTS.bidRefunded) {
    if (!e.bid || !str(e.bid.bidderId)) return [];
    const data = { ...base, bidId: e.bid.id, bidder: e.bid.bidderId, amount: e.bid.amount };
    const kind = type === MARKET_EVENTS.bidPlaced ? "bid.placed" : "bid.refunded";
    return [{ type: kind, actorId: e.bid.bidderId, ...ids, data }];
  }
  const own: Record<string, ActivityType> = {
    [MARKET_EVENTS.auctionStarted]: "auction.started",
    [MARKET_EVENTS.auctionUnsold]: "auction.unsold",
    [MARKET_EVENTS.auctionCancelled]: "auction.cancelled",
  };
  if (type !== MARKET_EVENTS.auctionSettled)
    return own[type] ? [{ type: own[type], actorId: a.sellerId, ...ids, data: base }] : [];
  const h = a.highestBid;
  if (!h || !str(a.winnerId)) return [];
  const royalty = e.royalty && BigInt(e.royalty) > 0n ? e.royalty : undefined;
  const sale = {
    ...base,
    winner: a.winnerId,
    price: h.amount,
    ...(royalty ? { royalty, royaltyTo: e.royaltyTo } : {}),
  };
  const parts: Part[] = [
    { type: "auction.settled", actorId: a.sellerId, ...ids, data: sale },
    { type: "auction.won", actorId: a.winnerId!, ...ids, data: sale },
  ];
  if (royalty && str(e.royaltyTo))
    parts.push({
      type: "royalty",
      actorId: e.royaltyTo!,
      ...ids,
      data: { ...sale, amount: royalty },
    });
  return parts;
}

// ---------------------------------------------------------------------------------------
// Cursors

/**
 * A cursor is a row's sequence number, fixed width in base 36 (11 digits hold every safe
 * integer), so cursors also sort as strings in the order of the rows. Opaque to clients:
 * only this module makes and reads them.
 */
const CURSOR_WIDTH = 11;
const CURSOR_RE = /^[0-9a-z]{11}$/;

export function encodeCursor(seq: number): string {
  return seq.toString(36).padStart(CURSOR_WIDTH, "0");
}

/** The sequence number of a cursor, or null when it is not one this service made. */
export function decodeCursor(cursor: string): number | null {
  if (!CURSOR_RE.test(cursor)) return null;
  const n = parseInt(cursor, 36);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

export const isActivityType = (t: string): t is ActivityType =>
  (ACTIVITY_TYPES as readonly string[]).includes(t);

/** The stored row as the API answers it. */
export function toActivityRow(doc: {
  _id: string;
  seq: number;
  type: ActivityType;
  at: string;
  actorId: string;
  tokenId?: string;
  nftId?: string;
  collectionId?: string;
  data: Record<string, unknown>;
}): ActivityRow {
  const row: ActivityRow = {
    id: doc._id,
    cursor: encodeCursor(doc.seq),
    type: doc.type,
    at: doc.at,
    actorId: doc.actorId,
    data: doc.data,
  };
  if (doc.tokenId !== undefined) row.tokenId = doc.tokenId;
  if (doc.nftId !== undefined) row.nftId = doc.nftId;
  if (doc.collectionId !== undefined) row.collectionId = doc.collectionId;
  return row;
}
