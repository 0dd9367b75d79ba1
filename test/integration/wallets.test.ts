import { SiweMessage } from "siwe";
import { Wallet, getAddress, type BaseWallet } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerUser, type Registered } from "../helpers/http";
import { startPlatform, usePlatform, type Platform } from "../helpers/platform";
import { balanceOf, createToken } from "../helpers/tokens";

/** Wallet linking by a signed EIP-4361 message (docs/api.md "Auth and users"), with real keys. */

interface WalletEntry {
  address: string;
  chainId: number;
  linkedAt: string;
}
interface UserBody {
  id: string;
  email?: string;
  wallets: WalletEntry[];
}
interface ChallengeBody {
  message: string;
  nonce: string;
  expiresAt: string;
}
interface ErrorBody {
  error: { type: string; message: string; data?: Array<{ field: string; message: string }> };
}

const errorFields = (body: unknown) =>
  (body as ErrorBody).error.data?.map(d => d.field).sort() ?? [];

function challenge(p: Platform, user: Registered, address: string, chainId: number = 1) {
  return p.client.post<ChallengeBody>(
    "/api/users/me/wallets/challenge",
    { address, chainId },
    { token: user.token },
  );
}

function link(p: Platform, user: Registered, message: string, signature: string) {
  return p.client.post<UserBody & ErrorBody>(
    "/api/users/me/wallets",
    { message, signature },
    { token: user.token },
  );
}

/** A challenge for `wallet`, signed by it: what a browser wallet hands back. */
async function signedChallenge(p: Platform, user: Registered, wallet: BaseWallet, chainId = 1) {
  const res = await challenge(p, user, wallet.address, chainId);
  expect(res.status, res.text).toBe(201);
  return { ...res.body, signature: await wallet.signMessage(res.body.message) };
}

async function linkWallet(p: Platform, user: Registered, wallet: BaseWallet, chainId = 1) {
  const c = await signedChallenge(p, user, wallet, chainId);
  const res = await link(p, user, c.message, c.signature);
  expect(res.status, res.text).toBe(201);
  return res.body;
}

/** `user` has no wallet linked. */
async function expectNoWallet(p: Platform, user: Registered) {
  const me = await p.client.get<UserBody>("/api/users/me", { token: user.token });
  expect(me.body.wallets).toEqual([]);
}

/** A refused link: 401 UNAUTHORIZED. */
function expectRefused(res: { status: number; text: string; body: ErrorBody }) {
  expect(res.status, res.text).toBe(401);
  expect(res.body.error.type).toBe("UNAUTHORIZED");
}

const unlink = (p: Platform, user: Registered, address: string) =>
  p.client.delete<UserBody & ErrorBody>(`/api/users/me/wallets/${address}`, {
    token: user.token,
  });

describe("wallets: link by signed message, unlink, resolve", () => {
  const p = usePlatform(["api", "users"], {
    settings: { api: { readyServices: ["users"], rateLimits: { max: 0 } } },
  });

  describe("POST /api/users/me/wallets/challenge", () => {
    it("issues an EIP-4361 message for the address, valid five minutes", async () => {
      const u = await registerUser(p.client, "chal");
      const wallet = Wallet.createRandom();
      const before = Date.now();
      // Any case of the hex is accepted; the message carries the EIP-55 spelling.
      const res = await challenge(p, u, wallet.address.toLowerCase(), 137);
      expect(res.status).toBe(201);
      expect(Object.keys(res.body).sort()).toEqual(["expiresAt", "message", "nonce"]);
      const msg = new SiweMessage(res.body.message);
      expect(msg).toMatchObject({
        domain: "localhost:3000",
        uri: "http://localhost:3000",
        address: wallet.address,
        chainId: 137,
        version: "1",
        nonce: res.body.nonce,
        expirationTime: res.body.expiresAt,
      });
      expect(msg.statement).toMatch(/link this wallet/i);
      const ttl = Date.parse(res.body.expiresAt) - before;
      expect(ttl).toBeGreaterThanOrEqual(5 * 60_000 - 1_000);
      expect(ttl).toBeLessThanOrEqual(5 * 60_000 + 1_000);
      const again = await challenge(p, u, wallet.address, 137);
      expect(again.body.nonce).not.toBe(res.body.nonce);
    });

    it("answers 400 naming the field for a bad address or chainId", async () => {
      const u = await registerUser(p.client, "chal400");
      const good = Wallet.createRandom().address;
      for (const address of ["0x123", good.slice(2), `${good}00`, `0x${"g".repeat(40)}`, 42]) {
        const res = await p.client.post<ErrorBody>(
          "/api/users/me/wallets/challenge",
          { address, chainId: 1 },
          { token: u.token },
        );
        expect(res.status, String(address)).toBe(400);
        expect(errorFields(res.body)).toEqual(["address"]);
      }
      for (const chainId of [0, -1, 1.5, "1", null, 1e300]) {
        const res = await p.client.post<ErrorBody>(
          "/api/users/me/wallets/challenge",
          { address: good, chainId },
          { token: u.token },
        );
        expect(res.status, String(chainId)).toBe(400);
        expect(errorFields(res.body)).toEqual(["chainId"]);
      }
      const none = await p.client.post<ErrorBody>(
        "/api/users/me/wallets/challenge",
        {},
        { token: u.token },
      );
      expect(errorFields(none.body)).toEqual(["address", "chainId"]);
    });

    it("needs a signed-in user", async () => {
      const address = Wallet.createRandom().address;
      const res = await p.client.post("/api/users/me/wallets/challenge", { address, chainId: 1 });
      expect(res.status).toBe(401);
      const linkRes = await p.client.post("/api/users/me/wallets", {
        message: "x",
        signature: "0x00",
      });
      expect(linkRes.status).toBe(401);
      expect((await p.client.delete(`/api/users/me/wallets/${address}`)).status).toBe(401);
    });

    it("holds at most 5 open challenges per user, also when asked at once: then 429 with Retry-After; a used one frees its place", async () => {
      const u = await registerUser(p.client, "many");
      const wallet = Wallet.createRandom();
      const burst = await Promise.all(
        Array.from({ length: 20 }, () => challenge(p, u, wallet.address)),
      );
      const issued = burst.filter(r => r.status === 201);
      expect(issued).toHaveLength(5);
      const refused = burst.filter(r => r.status === 429);
      expect(refused).toHaveLength(15);
      for (const r of refused) {
        expect((r.body as unknown as ErrorBody).error.type).toBe("RATE_LIMITED");
        // Until the soonest open challenge expires: all were just made, to live 5 minutes.
        const wait = Number(r.headers.get("retry-after"));
        expect(wait).toBeGreaterThanOrEqual(290);
        expect(wait).toBeLessThanOrEqual(300);
      }
      // Others are not held back by this user's challenges.
      const other = await registerUser(p.client, "other");
      expect((await challenge(p, other, wallet.address)).status).toBe(201);
      // Linking with one of them frees its place for one more, and only one.
      const first = issued[0].body;
      const linked = await link(p, u, first.message, await wallet.signMessage(first.message));
      expect(linked.status, linked.text).toBe(201);
      expect((await challenge(p, u, wallet.address)).status).toBe(201);
      expect((await challenge(p, u, wallet.address)).status).toBe(429);
    });
  });

  describe("POST /api/users/me/wallets", () => {
    it("links a wallet whose key signed the challenge; me and the public profile show it", async () => {
      const u = await registerUser(p.client, "link");
      const wallet = Wallet.createRandom();
      const body = await linkWallet(p, u, wallet, 10);
      expect(body.id).toBe(u.id);
      expect(body.email).toBe(u.email);
      expect(body.wallets).toHaveLength(1);
      expect(body.wallets[0]).toMatchObject({ address: wallet.address.toLowerCase(), chainId: 10 });
      expect(Object.keys(body.wallets[0]).sort()).toEqual(["address", "chainId", "linkedAt"]);
      expect(new Date(body.wallets[0].linkedAt).toString()).not.toBe("Invalid Date");

      const me = await p.client.get<UserBody>("/api/users/me", { token: u.token });
      expect(me.body.wallets).toEqual(body.wallets);
      const profile = await p.client.get<UserBody>(`/api/users/${u.id}`);
      expect(profile.status).toBe(200);
      expect(profile.body.wallets).toEqual(body.wallets);
    });

    it("shows a new wallet on a public profile that was read (and cached) before", async () => {
      const u = await registerUser(p.client, "cached");
      expect((await p.client.get<UserBody>(`/api/users/${u.id}`)).body.wallets).toEqual([]);
      const wallet = Wallet.createRandom();
      await linkWallet(p, u, wallet);
      const after = await p.client.get<UserBody>(`/api/users/${u.id}`);
      expect(after.body.wallets.map(w => w.address)).toEqual([wallet.address.toLowerCase()]);
    });

    it("answers 401 to a message that was already used", async () => {
      const u = await registerUser(p.client, "reuse");
      const wallet = Wallet.createRandom();
      const c = await signedChallenge(p, u, wallet);
      expect((await link(p, u, c.message, c.signature)).status).toBe(201);
      const again = await link(p, u, c.message, c.signature);
      expectRefused(again);
      expect(again.body.error.message).toMatch(/used/i);
    });

    it("answers 401 to another user's challenge, which stays usable by its owner", async () => {
      const alice = await registerUser(p.client, "alice");
      const mallory = await registerUser(p.client, "mallory");
      const wallet = Wallet.createRandom();
      const c = await signedChallenge(p, alice, wallet);
      expectRefused(await link(p, mallory, c.message, c.signature));
      await expectNoWallet(p, mallory);
      expect((await link(p, alice, c.message, c.signature)).status).toBe(201);
    });

    it("answers 401 to a tampered message, whoever signed it", async () => {
      const u = await registerUser(p.client, "tamper");
      const wallet = Wallet.createRandom();
      const other = Wallet.createRandom();
      const c = await signedChallenge(p, u, wallet);
      const otherAddress = c.message.replace(wallet.address, other.address);
      expect(otherAddress).not.toBe(c.message);
      // The original signature over a changed text; and the other key signing the changed text.
      expect((await link(p, u, otherAddress, c.signature)).status).toBe(401);
      expect((await link(p, u, otherAddress, await other.signMessage(otherAddress))).status).toBe(
        401,
      );
      // Another chain, or another site, signed by the right key: still not what we issued.
      const otherChain = c.message.replace("Chain ID: 1", "Chain ID: 5");
      expect((await link(p, u, otherChain, await wallet.signMessage(otherChain))).status).toBe(401);
      const otherSite = c.message
        .replace("localhost:3000 wants", "evil.example.com wants")
        .replace("URI: http://localhost:3000", "URI: https://evil.example.com");
      expect((await link(p, u, otherSite, await wallet.signMessage(otherSite))).status).toBe(401);
      expect((await link(p, u, "not a siwe message", c.signature)).status).toBe(401);
      // None of that used the challenge up.
      expect((await link(p, u, c.message, c.signature)).status).toBe(201);
    });

    it("answers 401 to a garbage or foreign signature without using up the challenge", async () => {
      const u = await registerUser(p.client, "garbage");
      const wallet = Wallet.createRandom();
      const c = await signedChallenge(p, u, wallet);
      const flipped =
        c.signature.slice(0, 20) + (c.signature[20] === "a" ? "b" : "a") + c.signature.slice(21);
      for (const signature of [
        "0xdeadbeef",
        "garbage",
        `0x${"ab".repeat(65)}`,
        flipped,
        await Wallet.createRandom().signMessage(c.message),
      ]) {
        expectRefused(await link(p, u, c.message, signature));
      }
      await expectNoWallet(p, u);
      expect((await link(p, u, c.message, c.signature)).status).toBe(201);
    });

    it("answers 400 when message or signature is missing or not a string", async () => {
      const u = await registerUser(p.client, "link400");
      const res = await p.client.post<ErrorBody>(
        "/api/users/me/wallets",
        { message: { $gt: "" }, signature: 1 },
        { token: u.token },
      );
      expect(res.status).toBe(400);
      expect(errorFields(res.body)).toEqual(["message", "signature"]);
    });

    it("answers 409 when the address is linked to another user", async () => {
      const alice = await registerUser(p.client, "owner");
      const bob = await registerUser(p.client, "second");
      const wallet = Wallet.createRandom();
      await linkWallet(p, alice, wallet);
      const c = await signedChallenge(p, bob, wallet);
      const res = await link(p, bob, c.message, c.signature);
      expect(res.status).toBe(409);
      expect(res.body.error.type).toBe("CONFLICT");
      await expectNoWallet(p, bob);
    });

    it("links the same address to the same user again without a second entry", async () => {
      const u = await registerUser(p.client, "relink");
      const wallet = Wallet.createRandom();
      const first = await linkWallet(p, u, wallet);
      const second = await linkWallet(p, u, wallet);
      expect(second.wallets).toEqual(first.wallets);
      const other = Wallet.createRandom();
      const third = await linkWallet(p, u, other, 137);
      expect(third.wallets.map(w => w.address)).toEqual([
        wallet.address.toLowerCase(),
        other.address.toLowerCase(),
      ]);
    });

    it("lets exactly one of racing submissions of one challenge succeed", async () => {
      for (let round = 0; round < 5; round++) {
        const u = await registerUser(p.client, "race");
        const wallet = Wallet.createRandom();
        const c = await signedChallenge(p, u, wallet);
        const results = await Promise.all(
          Array.from({ length: 8 }, () => link(p, u, c.message, c.signature)),
        );
        expect(results.map(r => r.status).sort()).toEqual([201, 401, 401, 401, 401, 401, 401, 401]);
        const me = await p.client.get<UserBody>("/api/users/me", { token: u.token });
        expect(me.body.wallets).toHaveLength(1);
      }
    });

    it("consumes a challenge once even when submissions interleave inside the service", async () => {
      // Over HTTP one submission often finishes before the next is parsed; calls started in
      // the same tick interleave at every await, so only the conditional write separates them.
      for (let round = 0; round < 5; round++) {
        const u = await registerUser(p.client, "race2");
        const c = await signedChallenge(p, u, Wallet.createRandom());
        const outcomes = await Promise.allSettled(
          Array.from({ length: 4 }, () =>
            p.broker.call(
              "users.linkWallet",
              { message: c.message, signature: c.signature },
              { meta: { user: { id: u.id } } },
            ),
          ),
        );
        expect(outcomes.filter(o => o.status === "fulfilled")).toHaveLength(1);
        for (const o of outcomes) {
          if (o.status === "rejected") expect(o.reason).toMatchObject({ code: 401 });
        }
      }
    });

    it("gives a contested address to exactly one of users racing inside the service", async () => {
      for (let round = 0; round < 5; round++) {
        const users = await Promise.all([1, 2, 3].map(i => registerUser(p.client, `race3${i}`)));
        const wallet = Wallet.createRandom();
        const signed = await Promise.all(users.map(u => signedChallenge(p, u, wallet)));
        const outcomes = await Promise.allSettled(
          users.map((u, i) =>
            p.broker.call(
              "users.linkWallet",
              { message: signed[i].message, signature: signed[i].signature },
              { meta: { user: { id: u.id } } },
            ),
          ),
        );
        expect(outcomes.filter(o => o.status === "fulfilled")).toHaveLength(1);
        for (const o of outcomes) {
          if (o.status === "rejected") expect(o.reason).toMatchObject({ code: 409 });
        }
        const withWallet = await Promise.all(
          users.map(u => p.client.get<UserBody>("/api/users/me", { token: u.token })),
        );
        expect(withWallet.filter(r => r.body.wallets.length > 0)).toHaveLength(1);
      }
    });

    it("gives a contested address to exactly one of two racing users", async () => {
      for (let round = 0; round < 5; round++) {
        const alice = await registerUser(p.client, "racea");
        const bob = await registerUser(p.client, "raceb");
        const wallet = Wallet.createRandom();
        const [ca, cb] = [
          await signedChallenge(p, alice, wallet),
          await signedChallenge(p, bob, wallet),
        ];
        const results = await Promise.all([
          link(p, alice, ca.message, ca.signature),
          link(p, bob, cb.message, cb.signature),
        ]);
        expect(results.map(r => r.status).sort()).toEqual([201, 409]);
        const owners = await Promise.all(
          [alice, bob].map(u => p.client.get<UserBody>("/api/users/me", { token: u.token })),
        );
        expect(owners.map(o => o.body.wallets.length).sort()).toEqual([0, 1]);
        const resolved = (await p.broker.call("users.resolveAccount", {
          account: wallet.address,
        })) as { id: string };
        const winner = results[0].status === 201 ? alice : bob;
        expect(resolved.id).toBe(winner.id);
      }
    });
  });

  describe("DELETE /api/users/me/wallets/:address and users.resolveAccount", () => {
    it("resolves a linked address in any case, and no longer after unlink", async () => {
      const u = await registerUser(p.client, "resolve");
      const wallet = Wallet.createRandom();
      const lower = wallet.address.toLowerCase();
      const upperHex = `0x${wallet.address.slice(2).toUpperCase()}`;
      const resolve = (account: string) => p.broker.call("users.resolveAccount", { account });

      // Unknown before the link.
      await expect(resolve(lower)).rejects.toMatchObject({ code: 404, type: "NOT_FOUND" });
      await linkWallet(p, u, wallet);
      for (const account of [wallet.address, lower, upperHex]) {
        expect(await resolve(account)).toEqual({ id: u.id });
      }
      expect(await resolve(u.id)).toEqual({ id: u.id });

      const res = await unlink(p, u, upperHex);
      expect(res.status).toBe(200);
      expect(res.body.id).toBe(u.id);
      expect(res.body.wallets).toEqual([]);
      for (const account of [wallet.address, lower, upperHex]) {
        await expect(resolve(account)).rejects.toMatchObject({ code: 404, type: "NOT_FOUND" });
      }
      expect(await resolve(u.id)).toEqual({ id: u.id });
    });

    it("removes only the named wallet and frees the address for another user", async () => {
      const alice = await registerUser(p.client, "unlinka");
      const bob = await registerUser(p.client, "unlinkb");
      const w1 = Wallet.createRandom();
      const w2 = Wallet.createRandom();
      await linkWallet(p, alice, w1);
      await linkWallet(p, alice, w2, 5);
      // Seen (and cached) before the unlink.
      expect((await p.client.get<UserBody>(`/api/users/${alice.id}`)).body.wallets).toHaveLength(2);

      const res = await unlink(p, alice, w1.address);
      expect(res.status).toBe(200);
      expect(res.body.wallets.map(w => w.address)).toEqual([w2.address.toLowerCase()]);
      const profile = await p.client.get<UserBody>(`/api/users/${alice.id}`);
      expect(profile.body.wallets.map(w => w.address)).toEqual([w2.address.toLowerCase()]);

      const linked = await linkWallet(p, bob, w1);
      expect(linked.wallets.map(w => w.address)).toEqual([w1.address.toLowerCase()]);
      const bobProfile = await p.client.get<UserBody>(`/api/users/${bob.id}`);
      expect(bobProfile.body.wallets.map(w => w.address)).toEqual([w1.address.toLowerCase()]);
      expect(await p.broker.call("users.resolveAccount", { account: w1.address })).toEqual({
        id: bob.id,
      });
      // Alice cannot unlink what is now Bob's.
      expect((await unlink(p, alice, w1.address)).status).toBe(404);
      expect(await p.broker.call("users.resolveAccount", { account: w1.address })).toEqual({
        id: bob.id,
      });
    });

    it("answers 404 for an address not linked to the caller and 400 for a malformed one", async () => {
      const u = await registerUser(p.client, "unlink404");
      const unknown = await unlink(p, u, Wallet.createRandom().address);
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.type).toBe("NOT_FOUND");
      const wallet = Wallet.createRandom();
      await linkWallet(p, u, wallet);
      expect((await unlink(p, u, wallet.address)).status).toBe(200);
      expect((await unlink(p, u, wallet.address)).status).toBe(404);
      const bad = await unlink(p, u, "0x1234");
      expect(bad.status).toBe(400);
      expect(errorFields(bad.body)).toEqual(["address"]);
    });
  });
});

describe("wallets: an expired challenge", () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform(["api", "users"], {
      settings: {
        api: { readyServices: ["users"] },
        users: {
          siwe: { ttlMs: 300, domain: "app.mintmesh.test", uri: "https://app.mintmesh.test" },
        },
      },
    });
  });
  afterAll(() => p.stop());

  it("answers 401 once the challenge has expired", async () => {
    const u = await registerUser(p.client, "expired");
    const wallet = Wallet.createRandom();
    const c = await signedChallenge(p, u, wallet);
    expect(new SiweMessage(c.message).domain).toBe("app.mintmesh.test");
    expect(Date.parse(c.expiresAt) - Date.now()).toBeLessThanOrEqual(300);
    await new Promise(resolve => setTimeout(resolve, 400));
    const res = await link(p, u, c.message, c.signature);
    expectRefused(res);
    expect(res.body.error.message).toMatch(/expired/i);
    await expectNoWallet(p, u);
  });

  it("still links within the expiry", async () => {
    const u = await registerUser(p.client, "intime");
    const wallet = Wallet.createRandom();
    const res = await challenge(p, u, wallet.address);
    const signature = await wallet.signMessage(res.body.message);
    expect((await link(p, u, res.body.message, signature)).status).toBe(201);
  });
});

describe("wallets: tokens take a linked address as an account", () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform(["api", "users", "tokens"], {
      settings: {
        api: { readyServices: ["users", "tokens"], rateLimits: { max: 0 } },
      },
    });
  });
  afterAll(() => p.stop());

  it("credits the linked user when a transfer names the wallet address", async () => {
    const alice = await registerUser(p.client, "sender");
    const bob = await registerUser(p.client, "receiver");
    const wallet = Wallet.createRandom();
    await linkWallet(p, bob, wallet);
    const token = await createToken(p.client, alice.token, { initialSupply: "1000" });
    const before = BigInt(await balanceOf(p.client, token.id, bob.id));

    const to = getAddress(wallet.address); // EIP-55 mixed case, as wallets show it
    const res = await p.client.post<{ to: string; amount: string }>(
      `/api/tokens/${token.id}/transfers`,
      { to, amount: "250" },
      { token: alice.token },
    );
    expect(res.status, res.text).toBe(201);
    expect(res.body.to).toBe(bob.id);
    expect(BigInt(await balanceOf(p.client, token.id, bob.id))).toBe(before + 250n);
    expect(await balanceOf(p.client, token.id, wallet.address.toLowerCase())).toBe(
      String(before + 250n),
    );
  });

  it("stops crediting an address as soon as its owner unlinks it", async () => {
    const alice = await registerUser(p.client, "payer");
    const bob = await registerUser(p.client, "first-owner");
    const carol = await registerUser(p.client, "next-owner");
    const wallet = Wallet.createRandom();
    await linkWallet(p, bob, wallet);
    const token = await createToken(p.client, alice.token, { initialSupply: "1000" });
    const pay = () =>
      p.client.post<{ to: string } & ErrorBody>(
        `/api/tokens/${token.id}/transfers`,
        { to: wallet.address, amount: "10" },
        { token: alice.token },
      );
    expect((await pay()).body.to).toBe(bob.id); // tokens now knows the address as Bob's

    expect((await unlink(p, bob, wallet.address)).status).toBe(200);
    const after = await pay();
    expect(after.status).toBe(404);
    expect(after.body.error.type).toBe("NOT_FOUND");

    await linkWallet(p, carol, wallet);
    expect((await pay()).body.to).toBe(carol.id);
    expect(await balanceOf(p.client, token.id, bob.id)).toBe("10");
    expect(await balanceOf(p.client, token.id, carol.id)).toBe("10");
  });

  it("answers 404 for a transfer to an address nobody linked", async () => {
    const alice = await registerUser(p.client, "sender2");
    const token = await createToken(p.client, alice.token, { initialSupply: "1000" });
    const res = await p.client.post<ErrorBody>(
      `/api/tokens/${token.id}/transfers`,
      { to: Wallet.createRandom().address, amount: "1" },
      { token: alice.token },
    );
    expect(res.status).toBe(404);
    expect(res.body.error.type).toBe("NOT_FOUND");
  });
});

describe("wallets: the message says which account the wallet is linked to", () => {
  let p: Platform;
  beforeAll(async () => {
    p = await startPlatform(["api", "users"], {
      settings: { api: { readyServices: ["users"], rateLimits: { max: 0 } } },
    });
  });
  afterAll(() => p.stop());

  it("names the account in the statement, and refuses a message naming another", async () => {
    const [ann, eve] = await Promise.all([
      registerUser(p.client, "named"),
      registerUser(p.client, "eve"),
    ]);
    const wallet = Wallet.createRandom();
    const res = await challenge(p, ann, wallet.address);
    expect(res.status).toBe(201);
    const msg = new SiweMessage(res.body.message);
    expect(msg.statement).toContain(ann.id);
    expect(msg.statement).not.toContain(eve.id);

    // The same challenge, its statement edited to name another account and signed so.
    const edited = res.body.message.replace(ann.id, eve.id);
    const signature = await wallet.signMessage(edited);
    expect((await link(p, ann, edited, signature)).status).toBe(401);
    expect(
      (await link(p, ann, res.body.message, await wallet.signMessage(res.body.message))).status,
    ).toBe(201);
  });
});
