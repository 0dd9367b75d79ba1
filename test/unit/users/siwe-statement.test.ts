import { Wallet } from "ethers";
import { describe, expect, it } from "vitest";
import { buildChallenge, linkStatement, mismatch, parseMessage } from "../../../lib/users/siwe";

describe("lib/siwe: the statement names the account", () => {
  const wallet = Wallet.createRandom();
  const base = {
    domain: "app.example.com",
    uri: "https://app.example.com",
    address: wallet.address,
    chainId: 1,
    issuedAt: new Date(),
    expiresAt: new Date(Date.now() + 60_000),
  };

  it("says which account the wallet is linked to", () => {
    const c = buildChallenge({ ...base, userId: "usr_0123456789abcdef01234567" });
    const msg = parseMessage(c.message)!;
    expect(msg.statement).toBe(linkStatement("usr_0123456789abcdef01234567"));
    expect(msg.statement).toContain("usr_0123456789abcdef01234567");
  });

  it("refuses a message whose statement names another account", () => {
    const c = buildChallenge({ ...base, userId: "usr_attacker" });
    const msg = parseMessage(c.message)!;
    const expected = { ...base, nonce: c.nonce, address: wallet.address.toLowerCase() };
    expect(mismatch(msg, { ...expected, userId: "usr_attacker" })).toBeNull();
    expect(mismatch(msg, { ...expected, userId: "usr_victim" })).toBe("statement");
  });
});
