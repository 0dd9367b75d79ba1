import { afterEach, describe, expect, it, vi } from "vitest";
import {
  productionSecret,
  requiredInProduction,
  weakSecretReason,
} from "../../../lib/shared/config-guards";
import { jwtSecret } from "../../../lib/users/jwt";

describe("lib/config-guards", () => {
  afterEach(() => vi.unstubAllEnvs());

  it("calls short and placeholder secrets weak", () => {
    expect(weakSecretReason("x")).toMatch(/shorter than 32 bytes/);
    expect(weakSecretReason("é".repeat(16))).toBeNull(); // 32 bytes in UTF-8
    for (const s of [
      "mintmesh-dev-secret-change-me",
      "replace-with-at-least-32-random-bytes",
      "change-me",
      "CHANGEME-changeme-CHANGEME-changeme",
    ]) {
      expect(weakSecretReason(s), s).toMatch(/placeholder/);
    }
    expect(weakSecretReason("3f9c1a7e5b2d8c4f6a0e9b1d3c5f7a2e4b6d")).toBeNull();
  });

  it("refuses a weak secret only in production, naming the variable", () => {
    expect(productionSecret("JWT_SECRET", "x")).toBe("x");
    vi.stubEnv("NODE_ENV", "production");
    expect(() => productionSecret("JWT_SECRET", "x")).toThrow(/^JWT_SECRET is shorter/);
    vi.stubEnv("JWT_SECRET", "change-me");
    expect(() => jwtSecret()).toThrow(/JWT_SECRET is a known placeholder/);
    vi.stubEnv("JWT_SECRET", "");
    expect(() => jwtSecret()).toThrow(/JWT_SECRET must be set/);
  });

  it("requires a setting in production and falls back elsewhere", () => {
    vi.stubEnv("SIWE_DOMAIN", "");
    expect(requiredInProduction("SIWE_DOMAIN", "localhost:3000")).toBe("localhost:3000");
    vi.stubEnv("NODE_ENV", "production");
    expect(() => requiredInProduction("SIWE_DOMAIN", "localhost:3000")).toThrow(
      "SIWE_DOMAIN must be set when NODE_ENV=production",
    );
    vi.stubEnv("SIWE_DOMAIN", "app.example.com");
    expect(requiredInProduction("SIWE_DOMAIN", "localhost:3000")).toBe("app.example.com");
  });
});
