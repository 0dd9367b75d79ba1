import { ServiceBroker } from "moleculer";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  BoundedLabels,
  DomainMetrics,
  METRICS,
  OTHER_LABEL,
  wholeUnits,
} from "../../../lib/observability/domain-metrics";
import { SAGA_EVENTS, TOKEN_EVENTS, domainEvent, type Token } from "../../../lib/events/domain";
import { MARKET_EVENTS } from "../../../lib/events/market";
import { NFT_EVENTS } from "../../../lib/events/nfts";
import { memoryStore } from "../../helpers/stores";
import { Outbox, type OutboxDoc } from "../../../lib/messaging/outbox";
import { bulkheadGaugesReporter } from "../../../middlewares/action-bulkhead.middleware";
import { quiet } from "../../helpers/ledger";

/**
 * The domain metrics on a real Moleculer metric registry: what each event counts, the
 * bound on token labels, whole units from base units, and the outbox counting a change
 * once however often its event is written.
 */

let broker: ServiceBroker;
let decimalsAsked: string[];
let metrics: DomainMetrics;

/** A counter's or gauge's series: its labels and value. */
interface Series {
  labels: Record<string, string>;
  value?: number;
}
const series = (b: ServiceBroker, name: string): Series[] =>
  (b.metrics.getMetric(name)?.snapshot() ?? []) as Series[];

/** The value of a metric's series with exactly these labels (undefined: no such series). */
const value = (name: string, labels: Record<string, string> = {}) =>
  series(broker, name).find(v => JSON.stringify(v.labels) === JSON.stringify(labels))?.value;

const token = (id: string, decimals: number): Token => ({
  id,
  name: id,
  symbol: id.toUpperCase(),
  decimals,
  totalSupply: "1000000",
  creatorId: "ann",
  metadata: {},
  createdAt: new Date().toISOString(),
});
const created = (t: Token) => domainEvent(TOKEN_EVENTS.created, t.id, { token: t, balances: [] });
const transferred = (id: string, tokenId: string, amount: string) =>
  domainEvent(TOKEN_EVENTS.transferred, id, {
    transferId: id,
    tokenId,
    from: "ann",
    to: "bob",
    amount,
    createdAt: "",
    balances: [],
  });
/** Lets the volume's decimals look-ups settle. */
const settle = () => new Promise(resolve => setImmediate(resolve));

beforeEach(() => {
  broker = new ServiceBroker({ logger: false, metrics: { enabled: true } });
  decimalsAsked = [];
  metrics = new DomainMetrics(
    broker.metrics,
    {
      maxTokenLabels: 2,
      decimalsOf: async id => {
        decimalsAsked.push(id);
        if (id === "gone") throw new Error("Token not found");
        return 6;
      },
    },
    quiet,
  );
});
afterEach(() => broker.stop());

describe("whole units", () => {
  it("divides the base units by 10^decimals, beyond what a float holds as an integer", () => {
    expect(wholeUnits("1450", 2)).toBe(14.5);
    expect(wholeUnits("7", 0)).toBe(7);
    expect(wholeUnits("1", 18)).toBe(1e-18);
    expect(wholeUnits((2n ** 256n - 1n).toString(), 18)).toBeCloseTo(1.157920892373162e59, -45);
  });
});

describe("bounded labels", () => {
  it("keeps the first ids and puts the rest under one label", () => {
    const labels = new BoundedLabels(2);
    expect(["a", "b", "c", "a", "d", "b"].map(id => labels.of(id))).toEqual([
      "a",
      "b",
      OTHER_LABEL,
      "a",
      OTHER_LABEL,
      "b",
    ]);
  });
});

describe("domain metrics", () => {
  it("are registered at 0 for what has no labels", () => {
    expect(value(METRICS.tokensCreated)).toBe(0);
    expect(value(METRICS.nftsMinted)).toBe(0);
    expect(value(METRICS.sales)).toBe(0);
  });

  it("count each kind of event, volumes in whole units of the token", async () => {
    metrics.eventWritten(created(token("tok_a", 2)));
    metrics.eventWritten(transferred("t1", "tok_a", "1450"));
    metrics.eventWritten(transferred("t2", "tok_a", "50"));
    // A token this node did not see created: its decimals are asked for, once.
    metrics.eventWritten(transferred("t3", "tok_b", "1500000"));
    metrics.eventWritten(transferred("t4", "tok_b", "500000"));
    metrics.eventWritten(domainEvent(NFT_EVENTS.minted, "n1", {}));
    metrics.eventWritten(
      domainEvent(MARKET_EVENTS.sold, "l1:3", {
        listing: { priceTokenId: "tok_a", price: "300" },
      }),
    );
    for (const [state, type] of [
      ["completed", "launch"],
      ["compensated", "launch"],
      ["completed", "purchase"],
    ] as const)
      metrics.eventWritten(
        domainEvent(SAGA_EVENTS[state], `${type}-${state}`, { sagaType: type, state }),
      );
    // Events that count nothing.
    metrics.eventWritten(domainEvent(TOKEN_EVENTS.approved, "a1", {}));
    await settle();

    expect(value(METRICS.tokensCreated)).toBe(1);
    expect(value(METRICS.transfers, { token: "tok_a" })).toBe(2);
    expect(value(METRICS.transfersVolume, { token: "tok_a" })).toBe(15);
    expect(value(METRICS.transfers, { token: "tok_b" })).toBe(2);
    expect(value(METRICS.transfersVolume, { token: "tok_b" })).toBe(2);
    expect(decimalsAsked).toEqual(["tok_b"]);
    expect(value(METRICS.nftsMinted)).toBe(1);
    expect(value(METRICS.sales)).toBe(1);
    expect(value(METRICS.salesVolume, { currency: "tok_a" })).toBe(3);
    expect(value(METRICS.sagas, { type: "launch", outcome: "completed" })).toBe(1);
    expect(value(METRICS.sagas, { type: "launch", outcome: "compensated" })).toBe(1);
    expect(value(METRICS.sagas, { type: "purchase", outcome: "completed" })).toBe(1);
  });

  it("label at most maxTokenLabels tokens; the rest are counted under _other", async () => {
    for (const id of ["t1", "t2", "t3", "t4"]) metrics.eventWritten(transferred(id, id, "1000000"));
    await settle();
    expect(value(METRICS.transfers, { token: "t1" })).toBe(1);
    expect(value(METRICS.transfers, { token: "t3" })).toBeUndefined();
    expect(value(METRICS.transfers, { token: OTHER_LABEL })).toBe(2);
    expect(value(METRICS.transfersVolume, { token: OTHER_LABEL })).toBe(2);
  });

  it("count a transfer whose token's decimals are unknown, without its volume", async () => {
    metrics.eventWritten(transferred("x", "gone", "5"));
    await settle();
    expect(value(METRICS.transfers, { token: "gone" })).toBe(1);
    expect(value(METRICS.transfersVolume, { token: "gone" })).toBeUndefined();
  });

  it("record breaker changes, open while open or half-open", () => {
    const labels = { action: "users.get", target: "n1" };
    metrics.breakerChanged("users.get", "n1", "open");
    expect(value(METRICS.breakerOpen, labels)).toBe(1);
    metrics.breakerChanged("users.get", "n1", "half-open");
    expect(value(METRICS.breakerOpen, labels)).toBe(1);
    metrics.breakerChanged("users.get", "n1", "closed");
    expect(value(METRICS.breakerOpen, labels)).toBe(0);
    for (const state of ["open", "half-open", "closed"])
      expect(value(METRICS.breakerChanges, { ...labels, state })).toBe(1);
  });

  it("measure a read model's lag from each event's time", () => {
    const now = Date.parse("2026-01-01T00:00:10.000Z");
    const at = (iso: string) => ({ ...transferred("l", "tok", "1"), occurredAt: iso });
    metrics.readModelApplied(
      "catalog",
      [at("2026-01-01T00:00:09.000Z"), at("2026-01-01T00:00:09.750Z")],
      now,
    );
    const lag = broker.metrics.getMetric(METRICS.readModelLag)!.snapshot()[0] as {
      count: number;
      sum: number;
      buckets: Record<string, number>;
    };
    expect(lag.count).toBe(2);
    expect(lag.sum).toBeCloseTo(1.25);
    expect(lag.buckets["0.25"]).toBe(1);
    expect(lag.buckets["1"]).toBe(2);
    expect(value(METRICS.readModelLagLast, { consumer: "catalog" })).toBeCloseTo(0.25);
  });
});

describe("the outbox as the commit point", () => {
  it("counts an event written twice (a retry, a recovery) once", async () => {
    // Not sent meanwhile (the channel is not ready): the second write finds the first.
    const outbox = new Outbox(
      await memoryStore<OutboxDoc>("outbox", {}),
      { ready: () => false, publish: async () => undefined },
      quiet,
    );
    outbox.onWritten = e => metrics.eventWritten(e);
    const t = token("tok_o", 0);
    await outbox.write([created(t), transferred("j1", t.id, "5")]);
    await outbox.write([transferred("j1", t.id, "5")]);
    await outbox.write([created(t)]);
    await settle();
    expect(value(METRICS.tokensCreated)).toBe(1);
    expect(value(METRICS.transfers, { token: "tok_o" })).toBe(1);
    expect(value(METRICS.transfersVolume, { token: "tok_o" })).toBe(5);
    await outbox.stop();
  });
});

describe("bulkhead gauges", () => {
  it("mirror Moleculer's bulkhead of an action while calls run and wait", async () => {
    const b = new ServiceBroker({
      logger: false,
      metrics: { enabled: true, reporter: [bulkheadGaugesReporter()] },
    });
    let release!: () => void;
    const gate = new Promise<void>(resolve => (release = resolve));
    b.createService({
      name: "slow",
      actions: {
        wait: { bulkhead: { enabled: true, concurrency: 1, maxQueueSize: 5 }, handler: () => gate },
      },
    });
    await b.start();
    try {
      const calls = [b.call("slow.wait"), b.call("slow.wait"), b.call("slow.wait")];
      const gauge = (name: string) => series(b, name)[0]?.value;
      await expect.poll(() => gauge(METRICS.bulkheadQueue)).toBe(2);
      expect(gauge(METRICS.bulkheadActive)).toBe(1);
      release();
      await Promise.all(calls);
      expect(gauge(METRICS.bulkheadActive)).toBe(0);
      expect(gauge(METRICS.bulkheadQueue)).toBe(0);
      expect(series(b, METRICS.bulkheadActive)[0].labels).toEqual({
        action: "slow.wait",
      });
    } finally {
      await b.stop();
    }
  });
});
