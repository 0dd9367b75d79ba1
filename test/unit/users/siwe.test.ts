import { Wallet, type BaseWallet } from "ethers";
import { describe, expect, it } from "vitest";
import {
  LINK_STATEMENT,
  buildChallenge,
  mismatch,
  parseMessage,
  verifySignature,
  type ExpectedChallenge,
} from "../../../lib/users/siwe";

const domain = "app.example.com";
const uri = "https://app.example.com";

function issue(wallet: BaseWallet, chainId = 1, ttlMs = 60_000) {
  const issuedAt = new Date();
  const expiresAt = new Date(issuedAt.getTime() + ttlMs);
  // Lower-case on purpose: clients send any case, the message must still parse.
  const built = buildChallenge({
    domain,
    uri,
    address: wallet.address.toLowerCase(),
    chainId,
    issuedAt,
    expiresAt,
  });
  const expected: ExpectedChallenge = {
    nonce: built.nonce,
    address: wallet.address.toLowerCase(),
    chainId,
    domain,
    uri,
  };
  return { ...built, expected, issuedAt, expiresAt };
}

describe("lib/siwe", () => {
  it("builds an EIP-4361 message that parses back to the same fields", () => {
    const wallet = Wallet.createRandom();
    const c = issue(wallet, 137);
    expect(c.message.split("\n")[0]).toBe(
      `${domain} wants you to sign in with your Ethereum account:`,
    );
    expect(c.message).toContain(wallet.address); // the EIP-55 spelling
    expect(c.message).toContain(LINK_STATEMENT);
    expect(c.nonce).toMatch(/^[A-Za-z0-9]{8,}$/);
    const msg = parseMessage(c.message);
    expect(msg).not.toBeNull();
    expect(msg).toMatchObject({
      domain,
      uri,
      address: wallet.address,
      chainId: 137,
      version: "1",
      nonce: c.nonce,
      expirationTime: c.expiresAt.toISOString(),
    });
    expect(mismatch(msg!, c.expected)).toBeNull();
  });

  it("gives every challenge its own nonce", () => {
    const wallet = Wallet.createRandom();
    const nonces = new Set(Array.from({ length: 50 }, () => issue(wallet).nonce));
    expect(nonces.size).toBe(50);
  });

  it("returns null for text that is not an EIP-4361 message", () => {
    expect(parseMessage("hello")).toBeNull();
    expect(parseMessage("")).toBeNull();
  });

  it("names the first field that differs from the challenge", () => {
    const wallet = Wallet.createRandom();
    const c = issue(wallet);
    const msg = parseMessage(c.message)!;
    expect(mismatch(msg, { ...c.expected, nonce: "otherNonce123" })).toBe("nonce");
    expect(mismatch(msg, { ...c.expected, address: Wallet.createRandom().address })).toBe(
      "address",
    );
    expect(mismatch(msg, { ...c.expected, chainId: 5 })).toBe("chainId");
    expect(mismatch(msg, { ...c.expected, domain: "evil.example.com" })).toBe("domain");
    expect(mismatch(msg, { ...c.expected, uri: "https://evil.example.com" })).toBe("uri");
    // Any case of the same address is the same address.
    const upper = `0x${wallet.address.slice(2).toUpperCase()}`;
    expect(mismatch(msg, { ...c.expected, address: upper })).toBeNull();
    expect(mismatch(msg, { ...c.expected, address: wallet.address })).toBeNull();
  });

  it("accepts the wallet's own signature and nothing else", async () => {
    const wallet = Wallet.createRandom();
    const c = issue(wallet);
    const msg = parseMessage(c.message)!;
    const now = new Date();
    const expect_ = { domain, nonce: c.nonce, now };
    const good = await wallet.signMessage(c.message);
    expect(await verifySignature(msg, good, expect_)).toBe(true);

    const other = await Wallet.createRandom().signMessage(c.message);
    expect(await verifySignature(msg, other, expect_)).toBe(false);
    expect(await verifySignature(msg, "0xdeadbeef", expect_)).toBe(false);
    expect(await verifySignature(msg, "not a signature", expect_)).toBe(false);
    expect(await verifySignature(msg, `0x${"ab".repeat(65)}`, expect_)).toBe(false);
    // A flipped byte in r.
    const flipped = good.slice(0, 10) + (good[10] === "0" ? "1" : "0") + good.slice(11);
    expect(await verifySignature(msg, flipped, expect_)).toBe(false);
    expect(await verifySignature(msg, good, { ...expect_, domain: "evil.example.com" })).toBe(
      false,
    );
    expect(await verifySignature(msg, good, { ...expect_, nonce: "otherNonce123" })).toBe(false);
  });

  it("refuses a signature over a tampered message", async () => {
    const wallet = Wallet.createRandom();
    const c = issue(wallet);
    const good = await wallet.signMessage(c.message);
    const tampered = parseMessage(c.message.replace("Chain ID: 1", "Chain ID: 5"))!;
    expect(tampered.chainId).toBe(5);
    expect(await verifySignature(tampered, good, { domain, nonce: c.nonce, now: new Date() })).toBe(
      false,
    );
  });

  it("refuses a message past its expiration time", async () => {
    const wallet = Wallet.createRandom();
    const c = issue(wallet, 1, 1_000);
    const msg = parseMessage(c.message)!;
    const sig = await wallet.signMessage(c.message);
    const later = new Date(c.expiresAt.getTime() + 1);
    expect(await verifySignature(msg, sig, { domain, nonce: c.nonce, now: c.issuedAt })).toBe(true);
    expect(await verifySignature(msg, sig, { domain, nonce: c.nonce, now: later })).toBe(false);
  });
});
