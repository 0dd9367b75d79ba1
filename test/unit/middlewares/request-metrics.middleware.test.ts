import { Errors, ServiceBroker } from "moleculer";
import { afterEach, describe, expect, it } from "vitest";
import { RequestMetricsMiddleware } from "../../../middlewares/request-metrics.middleware";

/** Moleculer's request metrics, as middlewares/request-metrics.middleware.ts keeps them. */
describe("RequestMetricsMiddleware", () => {
  let broker: ServiceBroker;
  afterEach(() => broker?.stop());

  it("counts calls, errors and times under Moleculer's names once it flushes", async () => {
    broker = new ServiceBroker({
      logger: false,
      metrics: { enabled: true },
      internalMiddlewares: false,
      middlewares: [RequestMetricsMiddleware()],
    });
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
});
