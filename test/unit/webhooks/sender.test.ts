import { afterAll, describe, expect, it } from "vitest";
import { createSender } from "../../../lib/webhooks/sender";
import { startWebhookReceiver, type Receiver } from "../../helpers/webhooks";

/**
 * The sender's own guarantees, against a real loopback server: what counts as
 * delivered, that a 3xx is not followed, and that the socket's lookup refuses a name
 * resolving to a private address even when the URL got past registration (DNS rebinding).
 */
describe("lib/webhooks/sender", () => {
  const receivers: Receiver[] = [];
  const receiver = async (...args: Parameters<typeof startWebhookReceiver>) => {
    const r = await startWebhookReceiver(...args);
    receivers.push(r);
    return r;
  };
  const open = createSender({ allowPrivate: true }, 1000, "test");
  const strict = createSender({ allowPrivate: false }, 1000, "test");
  afterAll(async () => {
    open.close();
    strict.close();
    await Promise.all(receivers.map(r => r.close()));
  });

  it("delivers on a 2xx, sending the body and headers as given", async () => {
    const r = await receiver();
    const result = await open.send(r.url, { "webhook-id": "act_1" }, '{"a":1}');
    expect(result).toEqual({ ok: true, status: 200 });
    expect(r.hits[0]).toMatchObject({ id: "act_1", body: '{"a":1}' });
    expect(r.hits[0].headers["content-type"]).toBe("application/json");
  });

  it("fails on a redirect without following it, and on a 429 keeps its Retry-After", async () => {
    const target = await receiver();
    const r = await receiver((_h, n, res) =>
      n === 1
        ? res.writeHead(307, { Location: target.url }).end()
        : res.writeHead(429, { "Retry-After": "7" }).end(),
    );
    expect(await open.send(r.url, { "webhook-id": "x" }, "{}")).toEqual({
      ok: false,
      status: 307,
      error: "HTTP 307",
    });
    expect(target.hits).toHaveLength(0);
    expect(await open.send(r.url, { "webhook-id": "x" }, "{}")).toMatchObject({
      ok: false,
      status: 429,
      retryAfter: "7",
    });
  });

  it("gives up on a receiver that does not answer in time", async () => {
    const r = await receiver(() => undefined);
    const t = Date.now();
    expect(await open.send(r.url, {}, "{}")).toEqual({ ok: false, error: "no answer in 1000 ms" });
    expect(Date.now() - t).toBeLessThan(3000);
  });

  it("refuses, at connect time, a name that resolves to loopback", async () => {
    const r = await receiver();
    const url = r.url.replace("127.0.0.1", "localhost");
    expect(await strict.send(url, {}, "{}")).toEqual({ ok: false, error: "EADDRNOTALLOWED" });
    expect(r.hits).toHaveLength(0);
    expect((await open.send(url, {}, "{}")).ok).toBe(true);
  });
});
