import type { Context } from "moleculer";
import { describe, expect, it } from "vitest";
import {
  REDACTED,
  isSecretKey,
  redactForTrace,
  traceTags,
} from "../../../lib/observability/trace-tags";

describe("lib/trace-tags", () => {
  it("knows keys named like secrets by their last word", () => {
    for (const key of [
      "password",
      "newPassword",
      "passwordHash",
      "accessToken",
      "token",
      "signature",
      "api_key",
      "privateKey",
      "JWT",
      "authorization",
      "x-sig",
    ]) {
      expect(isSecretKey(key), key).toBe(true);
    }
    for (const key of ["tokenId", "email", "displayName", "amount", "signedAt", "message", "id"]) {
      expect(isSecretKey(key), key).toBe(false);
    }
  });

  it("redacts secret values, JWT- and signature-shaped strings, and cuts the rest short", () => {
    const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3JfMSJ9.c2lnbmF0dXJlLWJ5dGVz";
    const sig = `0x${"ab".repeat(65)}`;
    const out = redactForTrace({
      email: "a@example.com",
      password: "hunter2",
      nested: { list: [{ signature: sig }], note: jwt, raw: sig.slice(2) },
      token: { id: "tok_1", symbol: "MINT" },
      long: "x".repeat(1000),
    }) as Record<string, unknown>;
    expect(out).toMatchObject({
      email: "a@example.com",
      password: REDACTED,
      nested: { list: [{ signature: REDACTED }], note: REDACTED, raw: REDACTED },
      token: { id: "tok_1", symbol: "MINT" },
    });
    expect((out.long as string).length).toBeLessThan(300);
    expect(JSON.stringify(out)).not.toMatch(/hunter2|eyJ|abab/);
  });

  it("redacts an API key in any field, alone or inside a text", () => {
    const key = `mm_${"Ab9_-".repeat(8)}xyz`;
    const out = redactForTrace({ description: `use ${key} here`, key, id: "key_1" });
    expect(out).toEqual({ description: REDACTED, key: REDACTED, id: "key_1" });
  });

  it("gives a span the redacted params when it starts, nothing when it ends", () => {
    const ctx = { params: { email: "e", password: "p" } } as unknown as Context;
    expect(traceTags(ctx)).toEqual({ params: { email: "e", password: REDACTED } });
    expect(traceTags(ctx, { token: "t" })).toEqual({});
  });
});
