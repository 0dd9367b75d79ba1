import { describe, expect, it } from "vitest";
import { newSecret, secretKey, sign, signedHeaders, verify } from "../../../lib/webhooks/signer";

describe("lib/webhooks/signer (Standard Webhooks)", () => {
  it("signs the specification libraries' vector", () => {
    // From the Standard Webhooks reference libraries' tests ("sign function works").
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    expect(sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')).toBe(
      "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    );
  });

  it("makes secrets of whsec_ and 32 random bytes, each different", () => {
    const a = newSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(secretKey(a)).toHaveLength(32);
    expect(newSecret()).not.toBe(a);
  });

  it("verifies what it signs, and nothing changed or stale", () => {
    const secret = newSecret();
    const body = JSON.stringify({ id: "act_1", type: "transfer.in" });
    const now = Date.now();
    const headers = signedHeaders(secret, "act_1", body, now);
    expect(verify(secret, headers, body, { nowMs: now })).toBe(true);
    expect(verify(secret, headers, body + " ", { nowMs: now })).toBe(false);
    expect(verify(secret, { ...headers, "webhook-id": "act_2" }, body, { nowMs: now })).toBe(false);
    expect(verify(newSecret(), headers, body, { nowMs: now })).toBe(false);
    expect(verify(secret, headers, body, { nowMs: now + 301_000 })).toBe(false);
    // Several signatures (a rotated secret): one valid is enough.
    const many = { ...headers, "webhook-signature": `v1,AAAA ${headers["webhook-signature"]}` };
    expect(verify(secret, many, body, { nowMs: now })).toBe(true);
  });
});
