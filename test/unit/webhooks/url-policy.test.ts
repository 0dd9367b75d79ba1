import type dns from "node:dns";
import { describe, expect, it } from "vitest";
import {
  UrlRefused,
  checkWebhookUrl,
  guardedLookup,
  isPublicAddress,
} from "../../../lib/webhooks/url-policy";

const strict = { allowPrivate: false };
const resolvesTo =
  (...addresses: string[]) =>
  async (): Promise<dns.LookupAddress[]> =>
    addresses.map(address => ({ address, family: address.includes(":") ? 6 : 4 }));

describe("lib/webhooks/url-policy (SSRF)", () => {
  it.each([
    "127.0.0.1",
    "127.255.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "[::1]",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "0:0:0:0:0:ffff:7f00:1",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "::127.0.0.1",
    "2002:7f00:1::",
    "not-an-ip",
  ])("refuses %s", ip => {
    expect(isPublicAddress(ip)).toBe(false);
  });

  it.each([
    "8.8.8.8",
    "1.1.1.1",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
  ])("lets %s through", ip => {
    expect(isPublicAddress(ip)).toBe(true);
  });

  it("wants https, no credentials, and public addresses", async () => {
    const pub = resolvesTo("93.184.215.14");
    await expect(
      checkWebhookUrl("https://hooks.example.com/x", strict, pub),
    ).resolves.toBeInstanceOf(URL);
    await expect(checkWebhookUrl("http://hooks.example.com/x", strict, pub)).rejects.toThrow(
      "must be https",
    );
    await expect(checkWebhookUrl("ftp://hooks.example.com/x", strict, pub)).rejects.toThrow(
      UrlRefused,
    );
    await expect(checkWebhookUrl("https://u:p@hooks.example.com/", strict, pub)).rejects.toThrow(
      "credentials",
    );
    await expect(checkWebhookUrl("nonsense", strict, pub)).rejects.toThrow("absolute URL");
    await expect(checkWebhookUrl("https://127.0.0.1/", strict, pub)).rejects.toThrow(
      "public address",
    );
    await expect(checkWebhookUrl("https://[::ffff:127.0.0.1]/", strict, pub)).rejects.toThrow(
      "public address",
    );
    await expect(checkWebhookUrl("https://2130706433/", strict, pub)).rejects.toThrow(
      "public address",
    );
  });

  it("refuses a name when any of its addresses is not public", async () => {
    await expect(
      checkWebhookUrl(
        "https://mixed.example.com/",
        strict,
        resolvesTo("93.184.215.14", "10.0.0.5"),
      ),
    ).rejects.toThrow("non-public");
    await expect(
      checkWebhookUrl("https://v6.example.com/", strict, resolvesTo("::1")),
    ).rejects.toThrow("non-public");
    await expect(checkWebhookUrl("https://localhost/", strict)).rejects.toThrow("non-public");
  });

  it("lets private addresses and http through only when allowed", async () => {
    const allow = { allowPrivate: true };
    await expect(checkWebhookUrl("http://127.0.0.1:9/hook", allow)).resolves.toBeInstanceOf(URL);
    await expect(checkWebhookUrl("ftp://127.0.0.1/", allow)).rejects.toThrow(UrlRefused);
  });

  it("refuses a non-public address at connect time too (DNS rebinding)", async () => {
    const lookup = guardedLookup(strict);
    const err = await new Promise<NodeJS.ErrnoException | null>(resolve =>
      lookup("localhost", { all: true }, e => resolve(e)),
    );
    expect(err?.code).toBe("EADDRNOTALLOWED");
    const allowed = await new Promise<NodeJS.ErrnoException | null>(resolve =>
      guardedLookup({ allowPrivate: true })("localhost", {}, e => resolve(e)),
    );
    expect(allowed).toBeNull();
  });
});
