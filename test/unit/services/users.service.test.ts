import { Errors, ServiceBroker } from "moleculer";
import jwt from "jsonwebtoken";
import { Wallet } from "ethers";
import { SiweMessage } from "siwe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import UsersService, { type UsersSettings } from "../../../services/users.service";
import type { Meta } from "../../../lib/shared/context";
import type { PublicProfile, User } from "../../../lib/users/users";

/**
 * The users service in a broker of its own, as the Moleculer TypeScript template tests
 * services: actions called directly with the `meta` the gateway would set.
 */

interface Auth {
  user: User;
  token: string;
}
interface Challenge {
  message: string;
  nonce: string;
  expiresAt: string;
}

const password = "correct horse battery";
const as = (id: string, meta: Meta = {}) => ({ meta: { ...meta, user: { id } } });

/** A broker hosting users alone, its settings over the defaults (as another node would). */
async function startUsers(settings: Partial<UsersSettings> = {}): Promise<ServiceBroker> {
  const broker = new ServiceBroker({ logger: false });
  broker.createService({ ...UsersService, settings: { ...UsersService.settings, ...settings } });
  await broker.start();
  return broker;
}

const register = (broker: ServiceBroker, name: string, meta: Meta = {}) =>
  broker.call<Auth, object>(
    "users.register",
    { email: `${name}@example.com`, password, displayName: name },
    { meta },
  );

/** Links a fresh wallet to `userId`: a challenge, signed by the wallet, sent back. */
async function linkNewWallet(
  broker: ServiceBroker,
  userId: string,
  wallet = Wallet.createRandom(),
) {
  const c = await broker.call<Challenge, object>(
    "users.walletChallenge",
    { address: wallet.address, chainId: 1 },
    as(userId),
  );
  const signature = await wallet.signMessage(c.message);
  return broker.call<User, object>(
    "users.linkWallet",
    { message: c.message, signature },
    as(userId),
  );
}

describe("users service", () => {
  let broker: ServiceBroker;
  beforeAll(async () => {
    broker = await startUsers();
  });
  afterAll(() => broker.stop());

  it("registers: the user without its hash, a token for it, and 201 with its Location", async () => {
    const meta: Meta = {};
    const res = await broker.call<Auth, object>(
      "users.register",
      { email: "  Ada@Example.COM ", password, displayName: " Ada " },
      { meta },
    );
    expect(res.user).toMatchObject({
      email: "ada@example.com",
      displayName: "Ada",
      bio: "",
      avatarUrl: null,
      wallets: [],
    });
    expect(res.user).not.toHaveProperty("passwordHash");
    expect(jwt.verify(res.token, UsersService.settings!.jwtSecret)).toMatchObject({
      sub: res.user.id,
    });
    expect(meta).toMatchObject({ $statusCode: 201, $location: `/api/users/${res.user.id}` });
  });

  it("refuses bad params with a ValidationError naming each field", async () => {
    const err = await broker
      .call("users.register", { email: "not-an-email", password: "short", displayName: "" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Errors.ValidationError);
    const fields = (err as Errors.ValidationError).data as Array<{ field: string }>;
    expect(fields.map(f => f.field).sort()).toEqual(["displayName", "email", "password"]);
  });

  it("answers 409 CONFLICT naming the field for an email registered already", async () => {
    await register(broker, "twice");
    await expect(register(broker, "twice")).rejects.toMatchObject({
      code: 409,
      type: "CONFLICT",
      data: [{ field: "email" }],
    });
  });

  it("logs in with the password; a wrong one and an unknown email get the same 401", async () => {
    const { user } = await register(broker, "login");
    const ok = await broker.call<Auth, object>("users.login", {
      email: "LOGIN@example.com",
      password,
    });
    expect(ok.user.id).toBe(user.id);
    for (const attempt of [
      { email: "login@example.com", password: "wrong password" },
      { email: "nobody@example.com", password },
    ]) {
      await expect(broker.call("users.login", attempt)).rejects.toMatchObject({
        code: 401,
        type: "UNAUTHORIZED",
        message: "Invalid email or password",
      });
    }
  });

  it("needs a user for me and updateMe (401), and shows others the profile without email", async () => {
    const { user } = await register(broker, "profile");
    await expect(broker.call("users.me", {})).rejects.toMatchObject({ code: 401 });
    await expect(broker.call("users.me", {}, as("usr_gone"))).rejects.toMatchObject({
      code: 401,
    });
    const updated = await broker.call<User, object>(
      "users.updateMe",
      { bio: "Hello", avatarUrl: null },
      as(user.id),
    );
    expect(updated).toMatchObject({ id: user.id, displayName: "profile", bio: "Hello" });
    expect(await broker.call("users.me", {}, as(user.id))).toEqual(updated);
    const profile = await broker.call<PublicProfile, object>("users.get", { id: user.id });
    expect(profile).toMatchObject({ id: user.id, bio: "Hello" });
    expect(profile).not.toHaveProperty("email");
    await expect(broker.call("users.get", { id: "usr_none" })).rejects.toMatchObject({
      code: 404,
      type: "NOT_FOUND",
    });
  });

  it("links a signed wallet (201), resolves its address to the user, and refuses it to another (409)", async () => {
    const alice = (await register(broker, "alice")).user.id;
    const bob = (await register(broker, "bob")).user.id;
    const wallet = Wallet.createRandom();
    const c = await broker.call<Challenge, object>(
      "users.walletChallenge",
      { address: wallet.address, chainId: 1 },
      as(alice),
    );
    const meta: Meta = { user: { id: alice } };
    const linked = await broker.call<User, object>(
      "users.linkWallet",
      { message: c.message, signature: await wallet.signMessage(c.message) },
      { meta },
    );
    expect(linked.wallets.map(w => w.address)).toEqual([wallet.address.toLowerCase()]);
    expect(meta).toMatchObject({ $statusCode: 201, $location: `/api/users/${alice}` });
    // EIP-55 mixed case in, the owner out.
    expect(await broker.call("users.resolveAccount", { account: wallet.address })).toEqual({
      id: alice,
    });
    await expect(linkNewWallet(broker, bob, wallet)).rejects.toMatchObject({
      code: 409,
      type: "CONFLICT",
      data: [{ field: "address" }],
    });
    // The challenge was used: sending it again is a 401.
    await expect(
      broker.call(
        "users.linkWallet",
        { message: c.message, signature: await wallet.signMessage(c.message) },
        as(alice),
      ),
    ).rejects.toMatchObject({ code: 401, message: "Wallet challenge already used" });
  });
});

describe("users service settings", () => {
  let broker: ServiceBroker;
  beforeAll(async () => {
    broker = await startUsers({
      jwtExpiresIn: "90s",
      siwe: { domain: "unit.example", uri: "https://unit.example", ttlMs: 200, maxOpen: 5 },
    });
  });
  afterAll(() => broker.stop());

  it("signs tokens for jwtExpiresIn", async () => {
    const { token } = await register(broker, "short");
    const claims = jwt.decode(token) as { iat: number; exp: number };
    expect(claims.exp - claims.iat).toBe(90);
  });

  it("issues challenges naming the siwe domain and uri, valid for siwe.ttlMs", async () => {
    const { user } = await register(broker, "siwe");
    const wallet = Wallet.createRandom();
    const c = await broker.call<Challenge, object>(
      "users.walletChallenge",
      { address: wallet.address, chainId: 1 },
      as(user.id),
    );
    const msg = new SiweMessage(c.message);
    expect(msg.domain).toBe("unit.example");
    expect(msg.uri).toBe("https://unit.example");
    expect(Date.parse(c.expiresAt) - Date.parse(msg.issuedAt!)).toBe(200);
    await new Promise(resolve => setTimeout(resolve, 250));
    await expect(
      broker.call(
        "users.linkWallet",
        { message: c.message, signature: await wallet.signMessage(c.message) },
        as(user.id),
      ),
    ).rejects.toMatchObject({ code: 401, message: "Wallet challenge expired" });
  });
});
