/**
 * The activity history (services/activity.service.ts): one row per account an event
 * concerns, kept forever, ordered by an opaque cursor. Rows leave the activity service in
 * two ways: durably, each as an `activity.recorded` event through its outbox (the
 * webhooks service delivers them), and as a best-effort hint broadcast to every gateway
 * (`ACTIVITY_LIVE`), which then reads the rows after its streams' cursors, so a lost hint
 * delays a live row but never drops it.
 */

export const ACTIVITY_EVENTS = {
  recorded: "activity.recorded",
} as const;

/** Broadcast (Moleculer event, not a channel) after rows commit: whose rows are new. */
export const ACTIVITY_LIVE = "activity.live";

export const ACTIVITY_TYPES = [
  "token.created",
  "transfer.in",
  "transfer.out",
  "approval",
  "nft.minted",
  "nft.transferred.in",
  "nft.transferred.out",
  "sale.bought",
  "sale.sold",
  "royalty",
  "listing.created",
  "listing.cancelled",
  "listing.expired",
  "offer.made",
  "offer.accepted",
  "offer.cancelled",
  "offer.expired",
  "bid.placed",
  "bid.refunded",
  "auction.won",
  "auction.settled",
  "auction.started",
  "auction.unsold",
  "auction.cancelled",
  "launch.completed",
  "launch.compensated",
] as const;

export type ActivityType = (typeof ACTIVITY_TYPES)[number];

/** A row as docs/api.md ("Activity") gives it. */
export interface ActivityRow {
  /** Unique and derived from the event and the account, so a redelivery repeats it: the webhook-id. */
  id: string;
  /** Opaque; orders the rows of an account, a token, an NFT and a collection. */
  cursor: string;
  type: ActivityType;
  /** ISO time of the change. */
  at: string;
  /** The account whose history this row is. */
  actorId: string;
  tokenId?: string;
  nftId?: string;
  collectionId?: string;
  data: Record<string, unknown>;
}

/**
 * The payload of an `activity.recorded` event: rows committed together, at most
 * RECORDED_MAX_ROWS of them (one event per batch, not per row: a transfer's two rows cost
 * one outbox entry and one message between them, not two each). A consumer also takes the
 * older shape, a row alone as the payload (`rowsOfRecorded`).
 */
export interface ActivityRecorded {
  rows: ActivityRow[];
}

/** Rows per `activity.recorded` event: about 50 kB, far below a NATS message's 1 MB. */
export const RECORDED_MAX_ROWS = 100;

/** The payload of ACTIVITY_LIVE. */
export interface ActivityLive {
  actorIds: string[];
}
