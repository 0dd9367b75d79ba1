import { describe, expect, it } from "vitest";
import { LoginRefused, LoginThrottle } from "../../../lib/gateway/login-throttle";

const throttle = (accountMaxFailures = 0) =>
  LoginThrottle.create(
    { maxFailures: 3, accountMaxFailures, windowMs: 3_600_000 },
    { namespace: "t" },
  );
const wrong = Object.assign(new Error("Invalid email or password"), { code: 401 });
const fail = (t: LoginThrottle, email: string, from: string) =>
  t.begin(email, from).then(a => t.settle(a, () => Promise.reject(wrong)));

describe("lib/login-throttle", () => {
  it("refuses an address past its own failures for an account, not another address", async () => {
    const t = throttle();
    for (let i = 0; i < 3; i++) await expect(fail(t, "a@x.io", "1.1.1.1")).rejects.toBe(wrong);
    await expect(t.begin("A@X.io ", "1.1.1.1")).rejects.toBeInstanceOf(LoginRefused);
    const owner = await t.begin("a@x.io", "2.2.2.2");
    expect(await t.settle(owner, async () => "ok")).toBe("ok");
    // Another account from the refused address is not affected.
    await expect(t.begin("b@x.io", "1.1.1.1")).resolves.toBeDefined();
  });

  it("forgets an address's failures when it succeeds", async () => {
    const t = throttle();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2; i++) await expect(fail(t, "c@x.io", "1.1.1.1")).rejects.toBe(wrong);
      const ok = await t.begin("c@x.io", "1.1.1.1");
      await t.settle(ok, async () => "ok");
    }
  });

  it("past the account's ceiling refuses addresses that have failed for it, only", async () => {
    const t = throttle(2);
    await expect(fail(t, "d@x.io", "1.1.1.1")).rejects.toBe(wrong);
    await expect(fail(t, "d@x.io", "2.2.2.2")).rejects.toBe(wrong);
    await expect(t.begin("d@x.io", "1.1.1.1")).rejects.toBeInstanceOf(LoginRefused);
    await expect(t.begin("d@x.io", "3.3.3.3")).resolves.toBeDefined();
  });

  it("counts nothing but a wrong password as a failure", async () => {
    const t = throttle(1);
    const busy = Object.assign(new Error("Service unavailable"), { code: 503 });
    const a = await t.begin("e@x.io", "1.1.1.1");
    await expect(t.settle(a, () => Promise.reject(busy))).rejects.toBe(busy);
    // No failure counted: past no ceiling, the same address may try again.
    await expect(t.begin("e@x.io", "1.1.1.1")).resolves.toBeDefined();
  });
});
