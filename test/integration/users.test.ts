import jwt from "jsonwebtoken";
import { describe, expect, it } from "vitest";
import { registerUser, type ErrorBody } from "../helpers/http";
import { usePlatform } from "../helpers/platform";

interface UserBody {
  id: string;
  email: string;
  displayName: string;
  bio: string;
  avatarUrl: string | null;
  wallets: unknown[];
  createdAt: string;
}
interface AuthBody {
  user: UserBody;
  token: string;
}

const password = "correct horse battery";

describe("users: register, login, profiles (docs/api.md)", () => {
  const p = usePlatform(["api", "users"], {
    settings: { api: { readyServices: ["users"], rateLimits: { loginMax: 1000 } } },
  });

  const fields = (body: unknown) => (body as ErrorBody).error.data?.map(d => d.field).sort();

  describe("POST /api/auth/register", () => {
    it("creates the user, trims and lower-cases the email, and returns a working token", async () => {
      const res = await p.client.post<AuthBody>("/api/auth/register", {
        email: "  Carol.Smith@Example.COM ",
        password,
        displayName: "  Carol  ",
      });
      expect(res.status).toBe(201);
      expect(res.body.user).toMatchObject({
        email: "carol.smith@example.com",
        displayName: "Carol",
        bio: "",
        avatarUrl: null,
        wallets: [],
      });
      expect(res.body.user.id).toMatch(/^usr_[0-9a-f]{24}$/);
      expect(res.headers.get("location")).toBe(`/api/users/${res.body.user.id}`);
      expect(new Date(res.body.user.createdAt).toString()).not.toBe("Invalid Date");
      expect(Object.keys(res.body.user).sort()).toEqual(
        ["avatarUrl", "bio", "createdAt", "displayName", "email", "id", "wallets"].sort(),
      );
      expect(res.text).not.toMatch(/scrypt|password/i);

      const me = await p.client.get<UserBody>("/api/users/me", { token: res.body.token });
      expect(me.status).toBe(200);
      expect(me.body.id).toBe(res.body.user.id);
    });

    it("answers 409 for an email already taken, whatever its case", async () => {
      const u = await registerUser(p.client, "dup");
      const res = await p.client.post<ErrorBody>("/api/auth/register", {
        email: u.email.toUpperCase(),
        password,
        displayName: "Again",
      });
      expect(res.status).toBe(409);
      expect(res.body.error.type).toBe("CONFLICT");
    });

    it("lets exactly one of many racing registrations of one email win", async () => {
      const email = `race-${Date.now()}@example.com`;
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          p.client.post("/api/auth/register", { email, password, displayName: `r${i}` }),
        ),
      );
      const statuses = results.map(r => r.status).sort();
      expect(statuses).toEqual([201, 409, 409, 409, 409, 409, 409, 409]);
    });

    it("answers 400 naming every wrong field", async () => {
      const res = await p.client.post<ErrorBody>("/api/auth/register", {
        email: "not-an-email",
        password: "short",
        displayName: "",
      });
      expect(res.status).toBe(400);
      expect(res.body.error.type).toBe("VALIDATION_ERROR");
      expect(fields(res.body)).toEqual(["displayName", "email", "password"]);
      expect(res.text).not.toContain("short");
    });

    it("checks the lengths of docs/api.md: password 8–128, displayName 1–64", async () => {
      const base = { email: `len-${Date.now()}@example.com`, password, displayName: "Len" };
      expect(
        (await p.client.post("/api/auth/register", { ...base, password: "x".repeat(129) })).status,
      ).toBe(400);
      expect(
        (await p.client.post("/api/auth/register", { ...base, displayName: "x".repeat(65) }))
          .status,
      ).toBe(400);
      expect(
        (await p.client.post("/api/auth/register", { ...base, displayName: "   " })).status,
      ).toBe(400);
      expect(
        (await p.client.post("/api/auth/register", { ...base, password: "x".repeat(128) })).status,
      ).toBe(201);
    });

    it("refuses NoSQL operators and other wrong types with 400", async () => {
      for (const body of [
        { email: { $gt: "" }, password, displayName: "x" },
        { email: "a@example.com", password: { $ne: null }, displayName: "x" },
        { email: "a@example.com", password: 12345678, displayName: "x" },
        { email: ["a@example.com"], password, displayName: "x" },
        { email: "a@example.com", password, displayName: { $where: "1" } },
      ]) {
        const res = await p.client.post<ErrorBody>("/api/auth/register", body);
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.body.error.type).toBe("VALIDATION_ERROR");
      }
    });
  });

  describe("POST /api/auth/login", () => {
    it("logs in with the right password, with any case and spacing of the email", async () => {
      const u = await registerUser(p.client, "login");
      const res = await p.client.post<AuthBody>("/api/auth/login", {
        email: ` ${u.email.toUpperCase()} `,
        password,
      });
      expect(res.status).toBe(200);
      expect(res.body.user.id).toBe(u.id);
      const me = await p.client.get<UserBody>("/api/users/me", { token: res.body.token });
      expect(me.body.email).toBe(u.email);
    });

    it("answers the same 401 for a wrong password and an unknown email", async () => {
      const u = await registerUser(p.client, "login2");
      const wrong = await p.client.post<ErrorBody>("/api/auth/login", {
        email: u.email,
        password: "wrong password",
      });
      const unknown = await p.client.post<ErrorBody>("/api/auth/login", {
        email: `nobody-${Date.now()}@example.com`,
        password,
      });
      expect(wrong.status).toBe(401);
      expect(unknown.status).toBe(401);
      expect(wrong.body.error.type).toBe("UNAUTHORIZED");
      expect(wrong.body.error.message).toBe(unknown.body.error.message);
    });

    it("answers 400 when a field is missing or not a string", async () => {
      expect((await p.client.post("/api/auth/login", { email: "a@example.com" })).status).toBe(400);
      expect(
        (await p.client.post("/api/auth/login", { email: { $gt: "" }, password: { $gt: "" } }))
          .status,
      ).toBe(400);
    });
  });

  describe("GET and PATCH /api/users/me", () => {
    it("needs a token: missing, malformed, forged and expired ones get 401", async () => {
      const u = await registerUser(p.client, "me");
      const forged = jwt.sign({ sub: u.id }, "not-the-secret", { algorithm: "HS256" });
      const expired = jwt.sign(
        { sub: u.id, exp: Math.floor(Date.now() / 1000) - 60 },
        "test-secret",
      );
      const cases: Array<Record<string, string>> = [
        {},
        { authorization: u.token },
        { authorization: `Basic ${u.token}` },
        { authorization: `Bearer ${forged}` },
        { authorization: `Bearer ${expired}` },
        { authorization: "Bearer " },
      ];
      for (const headers of cases) {
        const res = await p.client.get<ErrorBody>("/api/users/me", { headers });
        expect(res.status, JSON.stringify(headers)).toBe(401);
        expect(res.body.error.type).toBe("UNAUTHORIZED");
      }
      const ok = await p.client.get("/api/users/me", { token: u.token });
      expect(ok.status).toBe(200);
    });

    it("updates displayName, bio and avatarUrl and keeps the rest", async () => {
      const u = await registerUser(p.client, "patch");
      const res = await p.client.patch<UserBody>(
        "/api/users/me",
        {
          displayName: "New Name",
          bio: "Collector of rare tokens",
          avatarUrl: "https://img.example.com/a.png",
          email: "x@evil.com",
        },
        { token: u.token },
      );
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        id: u.id,
        email: u.email,
        displayName: "New Name",
        bio: "Collector of rare tokens",
        avatarUrl: "https://img.example.com/a.png",
      });
      const cleared = await p.client.patch<UserBody>(
        "/api/users/me",
        { avatarUrl: null },
        { token: u.token },
      );
      expect(cleared.body.avatarUrl).toBeNull();
      expect(cleared.body.bio).toBe("Collector of rare tokens");
    });

    it("refuses a bio over 500 characters and an avatarUrl that is not http(s)", async () => {
      const u = await registerUser(p.client, "patch2");
      const bio = await p.client.patch<ErrorBody>(
        "/api/users/me",
        { bio: "b".repeat(501) },
        { token: u.token },
      );
      expect(bio.status).toBe(400);
      expect(fields(bio.body)).toEqual(["bio"]);
      for (const avatarUrl of ["javascript:alert(1)", "ftp://x.example.com/a.png", "not a url"]) {
        const res = await p.client.patch<ErrorBody>(
          "/api/users/me",
          { avatarUrl },
          { token: u.token },
        );
        expect(res.status, avatarUrl).toBe(400);
        expect(fields(res.body)).toEqual(["avatarUrl"]);
      }
    });
  });

  describe("GET /api/users/:id", () => {
    it("shows the public profile without the email, to anyone", async () => {
      const u = await registerUser(p.client, "public");
      await p.client.patch("/api/users/me", { bio: "hello" }, { token: u.token });
      const res = await p.client.get<Record<string, unknown>>(`/api/users/${u.id}`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        id: u.id,
        displayName: "public",
        bio: "hello",
        wallets: [],
      });
      expect(res.body).not.toHaveProperty("email");
      expect(res.text).not.toContain(u.email);
    });

    it("answers 404 for an unknown id", async () => {
      const res = await p.client.get<ErrorBody>("/api/users/usr_000000000000000000000000");
      expect(res.status).toBe(404);
      expect(res.body.error.type).toBe("NOT_FOUND");
    });

    it("never puts a password hash in the cache", async () => {
      const u = await registerUser(p.client, "cache");
      await p.client.get(`/api/users/${u.id}`);
      const cache = (p.broker.cacher as unknown as { cache: Map<string, unknown> }).cache;
      expect(cache.size).toBeGreaterThan(0);
      expect(JSON.stringify([...cache.values()])).not.toMatch(/scrypt|passwordHash/);
    });
  });
});
