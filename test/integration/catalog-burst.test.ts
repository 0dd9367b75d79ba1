import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DomainEvent } from "../../lib/events/domain";
import type { CatalogToken } from "../../lib/read-models/read-model";
import type { Service } from "moleculer";
import type { DbMethods } from "../../mixins/db.mixin";
import type { Doc } from "../../lib/store/store";
import { TokenScript, sendAll, sendToChannel } from "../helpers/channels";
import { waitUntil } from "../helpers/cluster";
import { startPlatform, type Platform } from "../helpers/platform";

/**
 * A burst of transfers of one token, through the real in-memory channel adapter. The
 * catalog used to recount a token's transfers after every event (O(transfers) each, so
 * O(n²) for a burst): 20,000 events took about 38 s on a dev machine, against about 3 s
 * with stats kept incrementally. The bound sits between the two with a wide margin.
 */

const EVENTS = Number(process.env.CATALOG_BURST_EVENTS ?? 20_000);
const BOUND_MS = Number(process.env.CATALOG_BURST_BOUND_MS ?? 15_000);
/**
 * Sent in slices, each consumed before the next goes, like an outbox relay publishing
 * as the writes happen (and so that the bound measures consuming, not queueing).
 */
const SLICE = 50;

describe("catalog: a burst of transfers of one token", () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform(["api", "catalog"], { READY_SERVICES: "catalog" });
  });
  afterAll(() => p?.stop());

  it(`converges to exact stats for ${EVENTS} transfers within ${BOUND_MS} ms`, async () => {
    const accounts = Array.from({ length: 30 }, (_, i) => `acc${i}`);
    const s = new TokenScript({ creatorId: "acc0", totalSupply: "1000000" });
    // Accounts come and go as holders: some end at zero, some send all they have.
    const events: DomainEvent[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const from = accounts[i % accounts.length];
      const have = s.amountOf(from);
      const source = have > 0n ? from : "acc0";
      const amount = i % 7 === 0 ? s.amountOf(source) : 1n;
      events.push(s.transfer(source, accounts[(i * 7 + 3) % accounts.length], String(amount)));
    }
    const views = (p.broker.getLocalService("catalog") as Service & DbMethods).store<
      Doc & { transfers: number }
    >("views");
    const transfersSeen = async () => (await views.findOne({ _id: s.token.id }))?.transfers ?? 0;

    const t0 = Date.now();
    await sendToChannel(p.broker, s.created());
    for (let i = 0; i < events.length; i += SLICE) {
      const slice = events.slice(i, i + SLICE);
      // Every tenth slice also redelivers a few earlier events, newest first.
      const again = i % (SLICE * 10) === 0 ? events.slice(Math.max(0, i - 20), i).reverse() : [];
      await sendAll(p.broker, [...slice, ...again]);
      const want = i + slice.length;
      await waitUntil(async () => (await transfersSeen()) >= want, BOUND_MS, 1);
    }
    let last: CatalogToken | undefined;
    await waitUntil(
      async () => {
        last = (await p.client.get<CatalogToken>(`/api/tokens/${s.token.id}`)).body;
        return last.stats?.transfers === EVENTS;
      },
      BOUND_MS,
      20,
    );
    const elapsed = Date.now() - t0;
    expect(last?.stats).toEqual({ holders: s.holders(), transfers: EVENTS });
    expect(s.holders()).toBeGreaterThan(1);
    expect(elapsed).toBeLessThan(BOUND_MS);
  }, 120_000);
});
