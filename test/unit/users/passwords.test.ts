import { describe, expect, it } from "vitest";
import { dummyHash, hashPassword, verifyPassword } from "../../../lib/users/passwords";

describe("password hashing (scrypt)", () => {
  it("stores scrypt parameters, a per-user salt and the key", async () => {
    const stored = await hashPassword("correct horse battery");
    const parts = stored.split("$");
    expect(parts).toHaveLength(6);
    expect(parts.slice(0, 4)).toEqual(["scrypt", "32768", "8", "1"]);
    expect(Buffer.from(parts[4], "base64url")).toHaveLength(16);
    expect(stored).not.toContain("correct horse");
  });

  it("salts each hash: the same password hashes differently twice", async () => {
    const [a, b] = await Promise.all([
      hashPassword("same password"),
      hashPassword("same password"),
    ]);
    expect(a).not.toBe(b);
  });

  it("accepts the right password and refuses a wrong one", async () => {
    const stored = await hashPassword("correct horse battery");
    expect(await verifyPassword("correct horse battery", stored)).toBe(true);
    expect(await verifyPassword("correct horse batterx", stored)).toBe(false);
    expect(await verifyPassword("", stored)).toBe(false);
  });

  it("treats unicode compositions of the same text as the same password", async () => {
    const stored = await hashPassword("caf\u00e9 au lait");
    expect(await verifyPassword("cafe\u0301 au lait", stored)).toBe(true);
  });

  it("refuses a stored value that is not a scrypt hash or has been tampered with", async () => {
    const stored = await hashPassword("pw-123456");
    expect(await verifyPassword("pw-123456", "plain:pw-123456")).toBe(false);
    const parts = stored.split("$");
    parts[5] = Buffer.alloc(32).toString("base64url");
    expect(await verifyPassword("pw-123456", parts.join("$"))).toBe(false);
  });

  it("has a dummy hash that no password matches, for unknown emails", async () => {
    const dummy = await dummyHash();
    expect(dummy.startsWith("scrypt$")).toBe(true);
    expect(await verifyPassword("anything at all", dummy)).toBe(false);
    expect(await dummyHash()).toBe(dummy);
  });
});
