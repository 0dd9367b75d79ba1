import type { Context, Service, ServiceSchema } from "moleculer";
import type { DbMethods, DbVars } from "../mixins/db.mixin";
import { storesWithOutbox, type OutboxMethods, type OutboxVars } from "../mixins/outbox.mixin";
import {
  AccountsMixin,
  type AccountsMethods,
  type AccountsSettings,
} from "../mixins/accounts.mixin";
import {
  ReadModelMixin,
  type ReadModelChannel,
  type ReadModelMethods,
  type ReadModelSettings,
  type ReadModelThis,
  type ReadModelVars,
} from "../mixins/read-model.mixin";
import { APPLIED_COLLECTION } from "../lib/read-models/applied-events";
import {
  ACTIVITY,
  ACTIVITY_COLLECTIONS,
  ActivityLog,
  type ActivityDoc,
  type ActivityPage,
  type ListQuery,
} from "../lib/activity/activity-log";
import { ACTIVITY_CHANNELS, isActivityType } from "../lib/activity/rows";
import {
  ACTIVITY_EVENTS,
  ACTIVITY_LIVE,
  ACTIVITY_TYPES,
  RECORDED_MAX_ROWS,
  type ActivityLive,
  type ActivityRecorded,
  type ActivityRow,
  type ActivityType,
} from "../lib/events/activity";
import { domainEvent, type DomainEvent } from "../lib/events/domain";
import { accountParam, idParam } from "../lib/shared/params";
import { notFound, validationError } from "../lib/shared/errors";
import { requireUserId, type GatewayContext } from "../lib/shared/context";
import { envInt } from "../lib/shared/env";
import * as schemas from "../lib/gateway/openapi/schemas";

/**
 * activity: the history of every account, token, NFT and collection, kept forever (no
 * retention: docs/durability.md), from a consumer group ("activity") on the domain
 * channels. Each event becomes one row per account it concerns (lib/activity/rows.ts);
 * the rows, the applied-event records and their `activity.recorded` events (up to 100
 * rows each, through its outbox, for the webhooks service) commit in one transaction (lib/activity/activity-log.ts
 * numbers the rows there: cursor order is commit order). After the commit it broadcasts
 * ACTIVITY_LIVE, a hint for the gateways' live streams, which then read `list` after their
 * cursors. `list` is the contract the live stream builds on; the routes of docs/api.md
 * "Activity" are the published actions below.
 */

type ActivitySettings = ReadModelSettings & AccountsSettings;

interface ActivityVars {
  log: ActivityLog;
  /** What the batch's transaction wrote, sent once it has committed (`settled`). */
  pending: { send: () => void; actorIds: string[] } | null;
}

type ActivityThis = Service<ActivitySettings> &
  ActivityVars &
  DbMethods &
  DbVars &
  OutboxVars &
  OutboxMethods &
  AccountsMethods &
  ReadModelMethods &
  ReadModelVars;

export interface ListParams {
  actorId?: string;
  tokenId?: string;
  nftId?: string;
  collectionId?: string;
  types?: ActivityType[];
  order?: "asc" | "desc";
  limit?: number;
  cursor?: string;
}

interface PageQuery {
  order: "asc" | "desc";
  limit: number;
  cursor?: string;
  type?: string;
}
export interface MyActivityParams extends PageQuery {
  tokenId?: string;
  collectionId?: string;
}
export interface SubjectActivityParams extends PageQuery {
  id: string;
}
export interface TransfersParams extends PageQuery {
  id: string;
  account?: string;
}
export interface TransferParams {
  id: string;
  transferId: string;
}

/** A transfer as GET /api/tokens/:id/transfers answers it. */
export interface TransferEntry {
  id: string;
  tokenId: string;
  from: string;
  to: string;
  amount: string;
  spender?: string;
  createdAt: string;
  cursor?: string;
}

const cursorParam = {
  type: "string" as const,
  min: 1,
  max: 64,
  optional: true,
  description: "a page's `next` or a row's `cursor`: the rows after it (asc) or before it (desc)",
};
const pageQuery = {
  order: { type: "enum" as const, values: ["asc", "desc"], optional: true, default: "desc" },
  limit: {
    type: "number" as const,
    integer: true,
    convert: true,
    min: 1,
    max: 100,
    optional: true,
    default: 20,
  },
  cursor: cursorParam,
};
const typeQuery = {
  type: {
    type: "string" as const,
    min: 1,
    max: 1000,
    optional: true,
    description: `comma-separated activity types: ${ACTIVITY_TYPES.join(", ")}`,
  },
};

/** `?type=a,b` as types; 400 naming `type` for one that is not an activity type. */
function typesOf(type: string | undefined): ActivityType[] | undefined {
  if (type === undefined) return undefined;
  const types = type
    .split(",")
    .map(t => t.trim())
    .filter(t => t.length > 0);
  const unknown = types.find(t => !isActivityType(t));
  if (unknown !== undefined)
    throw validationError("type", `Unknown activity type '${unknown.slice(0, 64)}'`);
  return types as ActivityType[];
}

function toTransfer(row: ActivityRow): TransferEntry {
  const d = row.data as {
    transferId: string;
    from: string;
    to: string;
    amount: string;
    spender?: string;
  };
  const t: TransferEntry = {
    id: d.transferId,
    tokenId: row.tokenId ?? "",
    from: d.from,
    to: d.to,
    amount: d.amount,
    createdAt: row.at,
    cursor: row.cursor,
  };
  if (d.spender !== undefined) t.spender = d.spender;
  return t;
}

/** Every channel that yields rows shares one batch key: batches apply one at a time. */
const recorded: ReadModelChannel<ReadModelThis & ActivityVars & OutboxVars> = {
  key: () => ACTIVITY,
  async apply(fresh, tx) {
    // A batch whose transaction failed must not leave its sends to the next one.
    this.pending = null;
    const { rows, actorIds } = await ActivityLog.record(
      tx,
      fresh.map(r => r.event),
    );
    if (rows.length === 0) return;
    // The webhook deliveries' source: one event per RECORDED_MAX_ROWS rows, its id its first
    // row's (each row is in one batch only).
    const events: DomainEvent<ActivityRecorded>[] = [];
    for (let i = 0; i < rows.length; i += RECORDED_MAX_ROWS) {
      const chunk = rows.slice(i, i + RECORDED_MAX_ROWS);
      events.push(domainEvent(ACTIVITY_EVENTS.recorded, chunk[0]!.id, { rows: chunk }));
    }
    const send = await this.outbox.writeIn(tx, events);
    this.pending = { send, actorIds };
  },
};

const ActivityService: ServiceSchema<
  ReadModelSettings,
  DbMethods & OutboxMethods & AccountsMethods & ReadModelMethods,
  DbVars & OutboxVars & ActivityVars & ReadModelVars,
  ActivityThis
> = {
  name: "activity",
  mixins: [
    ...storesWithOutbox({ ...ACTIVITY_COLLECTIONS, ...APPLIED_COLLECTION }),
    AccountsMixin,
    ReadModelMixin<ActivityVars & OutboxVars>({
      channels: Object.fromEntries(ACTIVITY_CHANNELS.map(c => [c, recorded])),
      settled(_batch, fresh) {
        const done = fresh.length > 0 ? this.pending : null;
        this.pending = null;
        if (!done) return Promise.resolve();
        done.send();
        const live: ActivityLive = { actorIds: done.actorIds };
        // A hint only: a gateway that misses it finds the rows at its next read.
        return this.broker.broadcast(ACTIVITY_LIVE, live).catch((err: unknown) => {
          this.logger.debug({ err }, "Activity hint not broadcast");
        });
      },
    }),
  ],

  settings: {
    readModel: {
      group: "activity",
      maxInFlight: Object.fromEntries(
        ACTIVITY_CHANNELS.map(c => [c, envInt("ACTIVITY_IN_FLIGHT", 200)]),
      ),
    },
  },

  actions: {
    /** The contract the live stream builds on (docs/services.md "activity"). */
    list: {
      visibility: "public",
      params: {
        $$strict: "remove",
        actorId: { ...accountParam, optional: true },
        tokenId: { ...idParam, optional: true },
        nftId: { ...idParam, optional: true },
        collectionId: { ...idParam, optional: true },
        types: {
          type: "array",
          optional: true,
          max: ACTIVITY_TYPES.length,
          items: { type: "enum", values: [...ACTIVITY_TYPES] },
        },
        ...pageQuery,
      },
      handler(ctx: Context<ListParams>): Promise<ActivityPage> {
        return this.log.list(ctx.params as ListQuery);
      },
    },

    myActivity: {
      openapi: {
        summary: "The caller's activity, newest first unless order=asc",
        response: schemas.ActivityPage,
      },
      params: {
        $$strict: "remove",
        ...typeQuery,
        tokenId: { ...idParam, optional: true },
        collectionId: { ...idParam, optional: true },
        ...pageQuery,
      },
      handler(ctx: GatewayContext<MyActivityParams>): Promise<ActivityPage> {
        const { type, tokenId, collectionId, order, limit, cursor } = ctx.params;
        return this.log.list({
          actorId: requireUserId(ctx),
          tokenId,
          collectionId,
          types: typesOf(type),
          order,
          limit,
          cursor,
        });
      },
    },

    nftActivity: {
      openapi: { summary: "An NFT's activity, each event once", response: schemas.ActivityPage },
      params: { $$strict: "remove", id: idParam, ...typeQuery, ...pageQuery },
      handler(ctx: Context<SubjectActivityParams>): Promise<ActivityPage> {
        const { id, type, ...page } = ctx.params;
        return this.log.list({ nftId: id, types: typesOf(type), ...page });
      },
    },

    collectionActivity: {
      openapi: {
        summary: "A collection's activity, each event once",
        response: schemas.ActivityPage,
      },
      params: { $$strict: "remove", id: idParam, ...typeQuery, ...pageQuery },
      handler(ctx: Context<SubjectActivityParams>): Promise<ActivityPage> {
        const { id, type, ...page } = ctx.params;
        return this.log.list({ collectionId: id, types: typesOf(type), ...page });
      },
    },

    transfers: {
      openapi: {
        summary: "A token's transfers (of one account with account=), newest first",
        response: schemas.TransferPage,
      },
      params: {
        $$strict: "remove",
        id: idParam,
        account: { ...accountParam, optional: true },
        ...pageQuery,
      },
      async handler(
        ctx: Context<TransfersParams>,
      ): Promise<{ rows: TransferEntry[]; next: string | null }> {
        const { id, account, ...page } = ctx.params;
        let q: ListQuery;
        if (account !== undefined) {
          const actorId = await this.findAccount(ctx, account);
          // A wallet no user linked has no history; a bad cursor is still refused.
          q = { actorId: actorId ?? account, tokenId: id, types: ["transfer.out", "transfer.in"] };
        } else {
          // Each transfer once: its lead row, the sender's.
          q = { tokenId: id, types: ["transfer.out"] };
        }
        const res = await this.log.list({ ...q, ...page });
        return { rows: res.rows.map(toTransfer), next: res.next };
      },
    },

    transfer: {
      openapi: {
        summary: "A transfer (a transfer's Location)",
        response: schemas.TransferEntry,
        errors: [404],
      },
      params: { $$strict: "remove", id: idParam, transferId: idParam },
      async handler(ctx: Context<TransferParams>): Promise<TransferEntry> {
        const { id, transferId } = ctx.params;
        const row = await this.log.transfer(id, transferId);
        if (row) return toTransfer(row);
        // Not recorded yet (the event is on its way): the write model's journal has it,
        // so the Location of a 201 answers at once.
        const rec = await ctx.call<TransferEntry | null, TransferParams>(
          "tokens.journaledTransfer",
          {
            id,
            transferId,
          },
        );
        if (!rec) throw notFound("Transfer");
        return rec;
      },
    },
  },

  created() {
    this.pending = null;
  },

  async started() {
    const outbox = this.openOutbox();
    this.log = new ActivityLog(this.store<ActivityDoc>(ACTIVITY));
    outbox.start();
  },
};

export default ActivityService;
