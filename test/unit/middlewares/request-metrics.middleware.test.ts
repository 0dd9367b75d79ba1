import { Errors, ServiceBroker, type Context } from "moleculer";
import type { Meta } from "../../../lib/shared/context";
import { afterEach, describe, expect, it } from "vitest";
import { RequestMetricsMiddleware } from "../../../middlewares/request-metrics.middleware";

/** Moleculer's request metrics, as middlewares/request-metrics.middleware.ts keeps them. */
/** A broker whose only middleware is the one under test. */
const metricsBroker = () =>
  new ServiceBroker({
    logger: false,
    metrics: { enabled: true },
    internalMiddlewares: false,
    middlewares: [RequestMetricsMiddleware()],
  });

describe("RequestMetricsMiddleware", () => {
  let broker: ServiceBroker;
  afterEach(() => broker?.stop());

  it("counts calls, errors and times under Moleculer's names once it flushes", async () => {
    broker = metricsBroker();
    broker.createService({
      name: "svc",
      actions: {
        ok: () => "ok",
        fail: () => {
          throw new Errors.MoleculerClientError("nope", 409, "CONFLICT");
        },
      },
    });
    await broker.start();
    for (let i = 0; i < 3; i++) await broker.call("svc.ok");
    await expect(broker.call("svc.fail")).rejects.toThrow("nope");
    const labels = { service: "svc", action: "svc.ok", caller: null, type: "local" };

    // Nothing reaches the registry before the flush: the calls only added to the handler's tally.
    const metric = (name: string) => {
      const m = broker.metrics.getMetric(name);
      if (!m) throw new Error(`${name} is not registered`);
      return m;
    };
    expect(metric("moleculer.request.total").get(labels) ?? null).toBeNull();
    await new Promise(r => setTimeout(r, 1100));

    const total = metric("moleculer.request.total");
    expect(total.get(labels)?.value).toBe(3);
    expect(total.get({ ...labels, action: "svc.fail" })?.value).toBe(1);
    const errors = metric("moleculer.request.error.total");
    expect(
      errors.get({
        ...labels,
        action: "svc.fail",
        errorName: "MoleculerClientError",
        errorCode: 409,
        errorType: "CONFLICT",
      })?.value,
    ).toBe(1);
    const time = metric("moleculer.request.time").get(labels) as {
      count: number;
    } | null;
    expect(time?.count).toBe(3);
    expect(metric("moleculer.request.active").get(labels)?.value).toBe(0);
  });

  it("counts a request that became a stream (Meta.stream) but leaves its life out of the times", async () => {
    broker = metricsBroker();
    broker.createService({
      name: "gw",
      actions: {
        // As the gateway's live and operator streams do (lib/gateway/event-stream.ts).
        stream: (ctx: Context<unknown, Meta>) => {
          ctx.meta.stream = true;
          return new Promise(r => setTimeout(r, 300));
        },
        plain: () => new Promise(r => setTimeout(r, 10)),
      },
    });
    await broker.start();
    await broker.call("gw.stream");
    await broker.call("gw.plain");
    await new Promise(r => setTimeout(r, 1100));
    const labels = { service: "gw", action: "gw.stream", caller: null, type: "local" };
    const total = broker.metrics.getMetric("moleculer.request.total")!;
    const time = broker.metrics.getMetric("moleculer.request.time")!;
    expect(total.get(labels)?.value).toBe(1);
    expect((time.get(labels) as { count: number } | null)?.count ?? 0).toBe(0);
    expect((time.get({ ...labels, action: "gw.plain" }) as { count: number } | null)?.count).toBe(
      1,
    );
  });
});
