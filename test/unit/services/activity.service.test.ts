import type { Context, ServiceSchema } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import ActivityService from "../../../services/activity.service";
import TokensService from "../../../services/tokens.service";
import UsersService from "../../../services/users.service";
import {
  ACTIVITY_EVENTS,
  ACTIVITY_LIVE,
  RECORDED_MAX_ROWS,
  type ActivityLive,
  type ActivityRecorded,
  type ActivityRow,
} from "../../../lib/events/activity";
import type { DomainEvent, Token } from "../../../lib/events/domain";
import type { TransferRecord } from "../../../lib/tokens/ledger";
import type { Meta } from "../../../lib/shared/context";
import { waitUntil } from "../../helpers/cluster";
import { testBroker } from "../../helpers/read-models";

/**
 * The activity service in a broker of its own with the real users and tokens services, on
 * the in-memory channels adapter: what other services see of it. Rows leave in
 * `activity.recorded` events (the webhooks' source) and an `activity.live` hint after its
 * commit; `activity.list` is the contract the live stream reads; a transfer's Location
 * answers from the tokens journal while the history has not recorded it.
 */

type Page = { rows: ActivityRow[]; next: string | null };

async function userIn(broker: ReturnType<typeof testBroker>, name: string): Promise<string> {
  const res = await broker.call<{ user: { id: string } }, object>("users.register", {
    email: `${name}-${Date.now()}-${Math.random()}@example.com`,
    password: "correct horse battery",
    displayName: name,
  });
  return res.user.id;
}

describe("activity service", () => {
  const broker = testBroker();
  const recorded: Array<DomainEvent<ActivityRecorded>> = [];
  const rowsSent = (tokenId: string) =>
    recorded.flatMap(e => e.data.rows).filter(r => r.tokenId === tokenId);
  const live: ActivityLive[] = [];
  broker.createService(UsersService);
  broker.createService(TokensService);
  broker.createService(ActivityService);
  broker.createService({
    name: "probe",
    channels: {
      [ACTIVITY_EVENTS.recorded]: {
        group: "probe",
        handler: (ctx: Context<DomainEvent<ActivityRecorded>>) => void recorded.push(ctx.params),
      },
    },
    events: { [ACTIVITY_LIVE]: (ctx: Context<ActivityLive>) => void live.push(ctx.params) },
  } as ServiceSchema);
  beforeAll(() => broker.start());
  afterAll(() => broker.stop());

  const list = (params: object) => broker.call<Page, object>("activity.list", params);

  it("sends its rows on activity.recorded (batches named by their first row) and a live hint for its accounts", async () => {
    const [ann, bob] = [await userIn(broker, "ann"), await userIn(broker, "bob")];
    const meta: Meta = { user: { id: ann } };
    const token = await broker.call<Token, object>(
      "tokens.create",
      { name: "Rows", symbol: "ROWS", decimals: 0, initialSupply: "10" },
      { meta },
    );
    const t = await broker.call<TransferRecord, object>(
      "tokens.transfer",
      { id: token.id, to: bob, amount: "3" },
      { meta },
    );
    await waitUntil(() => rowsSent(token.id).length === 3, 5000, 10);
    const sent = rowsSent(token.id);
    const rows = [
      ...(await list({ actorId: ann, order: "asc" })).rows,
      ...(await list({ actorId: bob })).rows,
    ];
    expect([...sent].sort((a, b) => a.cursor.localeCompare(b.cursor))).toEqual(
      rows.sort((a, b) => a.cursor.localeCompare(b.cursor)),
    );
    for (const e of recorded) {
      expect(e.type).toBe(ACTIVITY_EVENTS.recorded);
      expect(e.eventId).toBe(`${ACTIVITY_EVENTS.recorded}:${e.data.rows[0]!.id}`);
      expect(e.data.rows.length).toBeGreaterThan(0);
      expect(e.data.rows.length).toBeLessThanOrEqual(RECORDED_MAX_ROWS);
    }
    // Fewer events than rows: a transfer's two rows travel together.
    expect(recorded.filter(e => e.data.rows.some(r => r.tokenId === token.id)).length).toBeLessThan(
      sent.length,
    );
    expect(sent.find(r => r.type === "transfer.in")).toMatchObject({
      actorId: bob,
      data: { transferId: t.id, from: ann, to: bob, amount: "3" },
    });
    await waitUntil(() => live.some(l => l.actorIds.includes(bob)), 5000, 10);
    // A hint comes after its rows: whoever it names finds them.
    const hinted = live.find(l => l.actorIds.includes(bob))!;
    expect(hinted.actorIds).toContain(ann);
  });

  it("lists after a row's cursor (asc) or before it (desc), and refuses what the contract does not take", async () => {
    const [ann, bob] = [await userIn(broker, "ann"), await userIn(broker, "bob")];
    const meta: Meta = { user: { id: ann } };
    const token = await broker.call<Token, object>(
      "tokens.create",
      { name: "Pages", symbol: "PAGES", decimals: 0, initialSupply: "10" },
      { meta },
    );
    for (let i = 0; i < 5; i++)
      await broker.call("tokens.transfer", { id: token.id, to: bob, amount: "1" }, { meta });
    await waitUntil(async () => (await list({ actorId: bob })).rows.length === 5, 5000, 10);
    const all = (await list({ actorId: ann, order: "asc", limit: 100 })).rows;
    expect(all.map(r => r.type)).toEqual(["token.created", ...Array(5).fill("transfer.out")]);
    // The live stream's resume: every row after the last one seen.
    expect((await list({ actorId: ann, order: "asc", cursor: all[2]!.cursor })).rows).toEqual(
      all.slice(3),
    );
    const page = await list({ actorId: ann, limit: 2, cursor: all[4]!.cursor });
    expect(page.rows).toEqual([all[3], all[2]]);
    expect(page.next).toBe(all[2]!.cursor);
    const last = await list({ actorId: ann, limit: 2, cursor: all[2]!.cursor });
    expect(last).toEqual({ rows: [all[1], all[0]], next: null });
    const typed = await list({ actorId: ann, tokenId: token.id, types: ["token.created"] });
    expect(typed.rows.map(r => r.id)).toEqual([all[0]!.id]);

    await expect(list({ actorId: ann, cursor: "nope" })).rejects.toMatchObject({
      type: "VALIDATION_ERROR",
      data: [{ field: "cursor" }],
    });
    await expect(list({ order: "asc" })).rejects.toMatchObject({ type: "VALIDATION_ERROR" });
    await expect(list({ actorId: ann, types: ["nope"] })).rejects.toMatchObject({
      type: "VALIDATION_ERROR",
    });
    await expect(list({ actorId: ann, limit: 101 })).rejects.toMatchObject({
      type: "VALIDATION_ERROR",
    });
  });
});

describe("a transfer's Location before the history has it", () => {
  const broker = testBroker();
  broker.createService(UsersService);
  broker.createService(TokensService);
  // An activity service that subscribes to nothing: it never records the transfer, so
  // its answer can only come from the tokens journal.
  broker.createService({
    ...ActivityService,
    created(this: { schema: ServiceSchema }) {
      this.schema.channels = {};
    },
  } as ServiceSchema);
  beforeAll(() => broker.start());
  afterAll(() => broker.stop());

  it("answers from the journal, with the spender of a transfer-from; 404 otherwise", async () => {
    const [ann, bob] = [await userIn(broker, "ann"), await userIn(broker, "bob")];
    const token = await broker.call<Token, object>(
      "tokens.create",
      { name: "Journal", symbol: "JRNL", decimals: 0, initialSupply: "10" },
      { meta: { user: { id: ann } } },
    );
    await broker.call(
      "tokens.approve",
      { id: token.id, spender: bob, amount: "5" },
      { meta: { user: { id: ann } } },
    );
    const t = await broker.call<TransferRecord, object>(
      "tokens.transferFrom",
      { id: token.id, from: ann, to: bob, amount: "2" },
      { meta: { user: { id: bob } } },
    );
    const got = await broker.call("activity.transfer", { id: token.id, transferId: t.id });
    expect(got).toEqual({ ...t, spender: bob });
    expect((await broker.call<Page, object>("activity.list", { actorId: ann })).rows).toEqual([]);
    await expect(
      broker.call("activity.transfer", { id: "tok_other", transferId: t.id }),
    ).rejects.toMatchObject({ code: 404 });
    await expect(
      broker.call("activity.transfer", { id: token.id, transferId: "trf_none" }),
    ).rejects.toMatchObject({ code: 404 });
  });
});
