import jwt from "jsonwebtoken";
import { describe, expect, it } from "vitest";
import { signAccessToken, verifyAccessToken } from "../../../lib/users/jwt";

const secret = "unit-secret";

describe("access tokens (JWT HS256)", () => {
  it("round-trips the user id as the subject", () => {
    const token = signAccessToken({ id: "usr_1" }, secret, "1h");
    expect(verifyAccessToken(token, secret)).toEqual({ id: "usr_1" });
    const decoded = jwt.decode(token, { complete: true });
    expect(decoded?.header.alg).toBe("HS256");
  });

  it("refuses a token signed with another secret", () => {
    const token = signAccessToken({ id: "usr_1" }, "other-secret", "1h");
    expect(verifyAccessToken(token, secret)).toBeNull();
  });

  it("refuses an expired token", () => {
    const token = jwt.sign({ sub: "usr_1", exp: Math.floor(Date.now() / 1000) - 10 }, secret);
    expect(verifyAccessToken(token, secret)).toBeNull();
  });

  it("refuses an unsigned (alg none) token and a token of another algorithm", () => {
    const none = jwt.sign({ sub: "usr_1" }, "", { algorithm: "none" });
    expect(verifyAccessToken(none, secret)).toBeNull();
    const hs512 = jwt.sign({ sub: "usr_1" }, secret, { algorithm: "HS512" });
    expect(verifyAccessToken(hs512, secret)).toBeNull();
  });

  it("refuses a token whose payload was changed", () => {
    const [h, , s] = signAccessToken({ id: "usr_1" }, secret, "1h").split(".");
    const forged = Buffer.from(JSON.stringify({ sub: "usr_admin" })).toString("base64url");
    expect(verifyAccessToken(`${h}.${forged}.${s}`, secret)).toBeNull();
  });

  it("refuses a token without a subject and garbage", () => {
    expect(verifyAccessToken(jwt.sign({ foo: 1 }, secret), secret)).toBeNull();
    expect(verifyAccessToken("not-a-token", secret)).toBeNull();
  });

  it("a token accepted before is refused once it expires, and never under another secret", async () => {
    const token = jwt.sign({ sub: "usr_2", exp: Math.floor(Date.now() / 1000) + 1 }, secret);
    expect(verifyAccessToken(token, secret)).toEqual({ id: "usr_2" });
    expect(verifyAccessToken(token, "another-secret")).toBeNull();
    expect(verifyAccessToken(token, secret)).toEqual({ id: "usr_2" });
    await new Promise(r => setTimeout(r, 2100));
    expect(verifyAccessToken(token, secret)).toBeNull();
  });
});
