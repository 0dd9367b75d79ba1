import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Context, ServiceSchema } from "moleculer";
import { startPlatform, type Platform } from "../helpers/platform";
import { registerUser, type Registered } from "../helpers/http";
import {
  allHolders,
  balanceOf,
  createToken,
  sumAmounts,
  uniqueSymbol,
  type TokenBody,
  type TransferBody,
} from "../helpers/tokens";
import type { DomainEvent, TokenTransferred } from "../../lib/events/domain";

const MAX = ((1n << 256n) - 1n).toString();
const OVER = (1n << 256n).toString();

type ErrorBody = {
  error: { type: string; message: string; data?: Array<{ field: string; message: string }> };
};

describe("tokens over HTTP", () => {
  let p: Platform;
  let alice: Registered;
  let bob: Registered;
  let carol: Registered;
  const events: DomainEvent[] = [];

  beforeAll(async () => {
    p = await startPlatform(["api", "users", "tokens"], {
      READY_SERVICES: "users,tokens",
      RATE_LIMIT_MAX: "0",
    });
    // A consumer of the channels, as catalog and analytics are (handlers get a Context).
    const probe: ServiceSchema = {
      name: "probe",
      channels: Object.fromEntries(
        ["tokens.created", "tokens.transferred", "tokens.approved", "tokens.updated"].map(c => [
          c,
          { group: "probe", handler: (ctx: Context<DomainEvent>) => void events.push(ctx.params) },
        ]),
      ),
    } as ServiceSchema;
    p.broker.createService(probe);
    await p.broker.waitForServices("probe");
    [alice, bob, carol] = await Promise.all([
      registerUser(p.client, "alice"),
      registerUser(p.client, "bob"),
      registerUser(p.client, "carol"),
    ]);
  });
  afterAll(() => p.stop());

  const post = <T = ErrorBody>(path: string, body: unknown, who?: Registered, key?: string) =>
    p.client.post<T>(path, body, {
      token: who?.token,
      headers: key ? { "idempotency-key": key } : {},
    });

  const expectFieldError = (res: { status: number; body: unknown }, field: string) => {
    expect(res.status).toBe(400);
    const err = (res.body as ErrorBody).error;
    expect(err.type).toBe("VALIDATION_ERROR");
    expect(err.data?.map(d => d.field)).toContain(field);
  };

  describe("POST /api/tokens", () => {
    it("creates a token whose creator holds the whole supply", async () => {
      const symbol = uniqueSymbol("A");
      const res = await post<TokenBody>(
        "/api/tokens",
        {
          name: "Alpha",
          symbol,
          decimals: 6,
          initialSupply: "5000",
          metadata: { description: "first", website: "https://alpha.example" },
        },
        alice,
      );
      expect(res.status).toBe(201);
      expect(res.body).toEqual({
        id: expect.stringMatching(/^tok_/),
        name: "Alpha",
        symbol,
        decimals: 6,
        totalSupply: "5000",
        creatorId: alice.id,
        metadata: { description: "first", website: "https://alpha.example" },
        createdAt: expect.any(String),
      });
      expect(await balanceOf(p.client, res.body.id, alice.id)).toBe("5000");
      expect(await allHolders(p.client, res.body.id)).toEqual([
        { account: alice.id, amount: "5000" },
      ]);
    });

    it("accepts the largest supply, 2^256-1", async () => {
      const t = await createToken(p.client, alice.token, { initialSupply: MAX, decimals: 0 });
      expect(t.totalSupply).toBe(MAX);
      expect(await balanceOf(p.client, t.id, alice.id)).toBe(MAX);
    });

    it("answers 409 when the symbol is taken, also when creators race for it", async () => {
      const symbol = uniqueSymbol("R");
      const results = await Promise.all(
        [alice, bob, carol, alice, bob].map(u =>
          post("/api/tokens", { name: "Race", symbol, decimals: 0, initialSupply: "1" }, u),
        ),
      );
      expect(results.map(r => r.status).sort()).toEqual([201, 409, 409, 409, 409]);
      const lost = results.find(r => r.status === 409)!;
      expect(lost.body.error.type).toBe("CONFLICT");
    });

    it("returns the first token for a repeated Idempotency-Key", async () => {
      const body = { name: "Idem", symbol: uniqueSymbol("I"), decimals: 2, initialSupply: "10" };
      const first = await post<TokenBody>("/api/tokens", body, alice, "create-1");
      const again = await post<TokenBody>("/api/tokens", body, alice, "create-1");
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.body).toEqual(first.body);
    });

    it("requires authentication", async () => {
      const res = await post("/api/tokens", {
        name: "X",
        symbol: uniqueSymbol(),
        decimals: 0,
        initialSupply: "1",
      });
      expect(res.status).toBe(401);
      expect(res.body.error.type).toBe("UNAUTHORIZED");
    });

    it.each([
      ["name", { name: "" }],
      ["name", { name: "x".repeat(65) }],
      ["symbol", { symbol: "abc" }],
      ["symbol", { symbol: "A" }],
      ["symbol", { symbol: "ABCDEFGHIJKL" }],
      ["decimals", { decimals: 19 }],
      ["decimals", { decimals: -1 }],
      ["decimals", { decimals: 1.5 }],
      ["initialSupply", { initialSupply: 100 }],
      ["initialSupply", { initialSupply: "-1" }],
      ["initialSupply", { initialSupply: "1.5" }],
      ["initialSupply", { initialSupply: "01" }],
      ["initialSupply", { initialSupply: "1e3" }],
      ["initialSupply", { initialSupply: "" }],
      ["initialSupply", { initialSupply: OVER }],
      ["metadata.imageUrl", { metadata: { imageUrl: "javascript:alert(1)" } }],
      ["metadata.website", { metadata: { website: "not a url" } }],
    ])("answers 400 naming %s when it is wrong", async (field, patch) => {
      const res = await post(
        "/api/tokens",
        { name: "Bad", symbol: uniqueSymbol(), decimals: 0, initialSupply: "1", ...patch },
        alice,
      );
      expectFieldError(res, field);
    });
  });

  describe("PATCH /api/tokens/:id/metadata", () => {
    let token: TokenBody;
    beforeAll(async () => {
      token = await createToken(p.client, alice.token, {
        metadata: { description: "old", website: "https://old.example" },
      });
    });

    it("lets the creator change the metadata, keeping fields not sent", async () => {
      const res = await p.client.patch<TokenBody>(
        `/api/tokens/${token.id}/metadata`,
        { description: "new", imageUrl: "https://img.example/a.png" },
        { token: alice.token },
      );
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        id: token.id,
        metadata: {
          description: "new",
          imageUrl: "https://img.example/a.png",
          website: "https://old.example",
        },
      });
    });

    it("answers 403 to anyone else", async () => {
      const res = await p.client.patch<ErrorBody>(
        `/api/tokens/${token.id}/metadata`,
        { description: "mine now" },
        { token: bob.token },
      );
      expect(res.status).toBe(403);
      expect(res.body.error.type).toBe("FORBIDDEN");
    });

    it("answers 404 for an unknown token, 400 for a bad URL, 401 without a token", async () => {
      const unknown = await p.client.patch<ErrorBody>(
        "/api/tokens/tok_nope/metadata",
        { description: "x" },
        { token: alice.token },
      );
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.type).toBe("NOT_FOUND");
      const bad = await p.client.patch(
        `/api/tokens/${token.id}/metadata`,
        { website: "ftp://files.example" },
        { token: alice.token },
      );
      expectFieldError(bad, "website");
      const anon = await p.client.patch(`/api/tokens/${token.id}/metadata`, { description: "x" });
      expect(anon.status).toBe(401);
    });
  });

  describe("transfers", () => {
    let token: TokenBody;
    beforeAll(async () => {
      token = await createToken(p.client, alice.token, { initialSupply: "1000" });
    });
    // A transfer of this describe's token by `from`.
    const transfer = <T = ErrorBody>(from: Registered, to: string, amount: string) =>
      post<T>(`/api/tokens/${token.id}/transfers`, { to, amount }, from);

    it("moves tokens and answers 201 with the transfer", async () => {
      const res = await transfer<TransferBody>(alice, bob.id, "300");
      expect(res.status).toBe(201);
      expect(res.body).toEqual({
        id: expect.stringMatching(/^trf_/),
        tokenId: token.id,
        from: alice.id,
        to: bob.id,
        amount: "300",
        createdAt: expect.any(String),
      });
      expect(await balanceOf(p.client, token.id, alice.id)).toBe("700");
      expect(await balanceOf(p.client, token.id, bob.id)).toBe("300");
      // Published through the outbox with the balances after the change.
      await expect
        .poll(() => events.find(e => (e.data as TokenTransferred).transferId === res.body.id))
        .toMatchObject({
          eventId: `tokens.transferred:${res.body.id}`,
          type: "tokens.transferred",
          data: {
            tokenId: token.id,
            from: alice.id,
            to: bob.id,
            amount: "300",
            balances: [
              { account: alice.id, amount: "700" },
              { account: bob.id, amount: "300" },
            ],
          },
        });
    });

    it("answers 422 INSUFFICIENT_FUNDS and changes nothing", async () => {
      const res = await transfer(bob, carol.id, "301");
      expect(res.status).toBe(422);
      expect(res.body.error.type).toBe("INSUFFICIENT_FUNDS");
      expect(await balanceOf(p.client, token.id, bob.id)).toBe("300");
      expect(await balanceOf(p.client, token.id, carol.id)).toBe("0");
    });

    it("records a transfer of 0 and a transfer to oneself without changing balances", async () => {
      const zero = await transfer<TransferBody>(carol, carol.id, "0");
      expect(zero.status).toBe(201);
      expect(zero.body.amount).toBe("0");
      const self = await transfer<TransferBody>(bob, bob.id, "300");
      expect(self.status).toBe(201);
      expect(self.body).toMatchObject({ from: bob.id, to: bob.id, amount: "300" });
      expect(await balanceOf(p.client, token.id, bob.id)).toBe("300");
      // Even to oneself, a transfer cannot exceed the balance.
      const tooMuch = await transfer(bob, bob.id, "301");
      expect(tooMuch.status).toBe(422);
      const holders = await allHolders(p.client, token.id);
      expect(sumAmounts(holders)).toBe(1000n);
    });

    it("answers 404 naming an unknown recipient, 404 for an unknown token", async () => {
      const res = await transfer(alice, "usr_nobody", "1");
      expect(res.status).toBe(404);
      expect(res.body.error.type).toBe("NOT_FOUND");
      expect(res.body.error.message).toContain("usr_nobody");
      const unknown = await post(
        "/api/tokens/tok_nope/transfers",
        { to: bob.id, amount: "1" },
        alice,
      );
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.type).toBe("NOT_FOUND");
    });

    it.each([[1], ["-1"], ["1.0"], ["007"], [" 1"], [OVER], [null]])(
      "answers 400 naming amount for %j",
      async amount => {
        const res = await post(`/api/tokens/${token.id}/transfers`, { to: bob.id, amount }, alice);
        expectFieldError(res, "amount");
      },
    );

    it("answers 400 without a recipient and 401 without a token", async () => {
      expectFieldError(
        await post(`/api/tokens/${token.id}/transfers`, { amount: "1" }, alice),
        "to",
      );
      const anon = await post(`/api/tokens/${token.id}/transfers`, { to: bob.id, amount: "1" });
      expect(anon.status).toBe(401);
    });

    it("replays a repeated Idempotency-Key instead of paying twice", async () => {
      const path = `/api/tokens/${token.id}/transfers`;
      const first = await post<TransferBody>(path, { to: carol.id, amount: "5" }, alice, "pay-1");
      const again = await post<TransferBody>(path, { to: carol.id, amount: "5" }, alice, "pay-1");
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.body).toEqual(first.body);
      expect(await balanceOf(p.client, token.id, carol.id)).toBe("5");
      // The same key for another transfer is refused.
      const other = await post(path, { to: carol.id, amount: "6" }, alice, "pay-1");
      expect(other.status).toBe(409);
    });

    it("keeps the key in the service too: a retry reaching it again gets the first result", async () => {
      // As after a gateway restart (its cache gone) or a broker retry: the service decides.
      const call = (amount: string) =>
        p.broker.call<TransferBody, { id: string; to: string; amount: string }>(
          "tokens.transfer",
          { id: token.id, to: carol.id, amount },
          { meta: { user: { id: alice.id }, idempotencyKey: `${alice.id}:svc-1` } },
        );
      const [a, b] = await Promise.all([call("7"), call("7")]);
      const c = await call("7");
      expect(b).toEqual(a);
      expect(c).toEqual(a);
      expect(await balanceOf(p.client, token.id, carol.id)).toBe("12");
      await expect(call("8")).rejects.toMatchObject({ code: 409, type: "CONFLICT" });
    });

    it("replays a business error for a repeated key", async () => {
      const call = () =>
        p.broker.call(
          "tokens.transfer",
          { id: token.id, to: alice.id, amount: "1000000" },
          {
            meta: { user: { id: carol.id }, idempotencyKey: `${carol.id}:fail-1` },
          },
        );
      await expect(call()).rejects.toMatchObject({ code: 422, type: "INSUFFICIENT_FUNDS" });
      await expect(call()).rejects.toMatchObject({ code: 422, type: "INSUFFICIENT_FUNDS" });
    });
  });

  describe("approvals and transfers-from", () => {
    let token: TokenBody;
    beforeAll(async () => {
      token = await createToken(p.client, alice.token, { initialSupply: "100" });
    });
    // Approvals and transfers-from on this describe's token, by the given user.
    const approve = (owner: Registered, spender: string, amount: string) =>
      post(`/api/tokens/${token.id}/approvals`, { spender, amount }, owner);
    const transferFrom = <T = ErrorBody>(
      spender: Registered,
      from: string,
      to: string,
      amount: string,
    ) => post<T>(`/api/tokens/${token.id}/transfers-from`, { from, to, amount }, spender);
    const allowance = async (owner: string, spender: string) =>
      (
        await p.client.get<{ amount: string }>(
          `/api/tokens/${token.id}/allowances/${owner}/${spender}`,
        )
      ).body;
    // A refused transfer-from: 422 of that type, bob's allowance as given, alice still at 80.
    const expectRefused = async (
      res: { status: number; body: ErrorBody },
      type: string,
      allowanceLeft: string,
    ) => {
      expect(res.status).toBe(422);
      expect(res.body.error.type).toBe(type);
      expect(await allowance(alice.id, bob.id)).toEqual({ amount: allowanceLeft });
      expect(await balanceOf(p.client, token.id, alice.id)).toBe("80");
    };

    it("sets (not adds) an allowance and answers 200", async () => {
      const first = await approve(alice, bob.id, "50");
      expect(first.status).toBe(200);
      const owner = alice.id;
      expect(first.body).toEqual({ tokenId: token.id, owner, spender: bob.id, amount: "50" });
      expect((await approve(alice, bob.id, "30")).status).toBe(200);
      expect(await allowance(alice.id, bob.id)).toEqual({ amount: "30" });
      expect(await allowance(bob.id, alice.id)).toEqual({ amount: "0" });
      expect(await allowance("usr_nobody", alice.id)).toEqual({ amount: "0" });
    });

    it("spends the allowance on transfers-from", async () => {
      const res = await transferFrom<TransferBody>(bob, alice.id, carol.id, "20");
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({
        tokenId: token.id,
        from: alice.id,
        to: carol.id,
        amount: "20",
      });
      expect(await allowance(alice.id, bob.id)).toEqual({ amount: "10" });
      expect(await balanceOf(p.client, token.id, alice.id)).toBe("80");
      expect(await balanceOf(p.client, token.id, carol.id)).toBe("20");
    });

    it("answers 422 INSUFFICIENT_ALLOWANCE and changes nothing", async () => {
      const res = await transferFrom(bob, alice.id, carol.id, "11");
      await expectRefused(res, "INSUFFICIENT_ALLOWANCE", "10");
    });

    it("answers 422 INSUFFICIENT_FUNDS and leaves the allowance as it was", async () => {
      await approve(alice, bob.id, "500");
      const res = await transferFrom(bob, alice.id, carol.id, "81");
      await expectRefused(res, "INSUFFICIENT_FUNDS", "500");
    });

    it("answers 404 naming an unknown spender or owner, 400 for a bad amount", async () => {
      const a = await approve(alice, "usr_ghost", "1");
      expect(a.status).toBe(404);
      expect(a.body.error.message).toContain("usr_ghost");
      const b = await transferFrom(bob, "usr_ghost", carol.id, "1");
      expect(b.status).toBe(404);
      expect(b.body.error.message).toContain("usr_ghost");
      expectFieldError(await approve(alice, bob.id, "1.5"), "amount");
      expectFieldError(await transferFrom(bob, alice.id, carol.id, OVER), "amount");
      const anon = await post(`/api/tokens/${token.id}/approvals`, {
        spender: bob.id,
        amount: "1",
      });
      expect(anon.status).toBe(401);
    });
  });

  describe("reads", () => {
    let token: TokenBody;
    let dave: Registered;
    beforeAll(async () => {
      dave = await registerUser(p.client, "dave");
      token = await createToken(p.client, dave.token, { initialSupply: "1000" });
      for (const [to, amount] of [
        [alice.id, "100"],
        [bob.id, "300"],
        [carol.id, "200"],
      ]) {
        await post(`/api/tokens/${token.id}/transfers`, { to, amount }, dave);
      }
    });

    it("lists holders largest first, paged, with the total", async () => {
      const all = await p.client.get<{ rows: unknown[]; total: number }>(
        `/api/tokens/${token.id}/holders`,
      );
      expect(all.status).toBe(200);
      expect(all.body).toEqual({
        rows: [
          { account: dave.id, amount: "400" },
          { account: bob.id, amount: "300" },
          { account: carol.id, amount: "200" },
          { account: alice.id, amount: "100" },
        ],
        total: 4,
      });
      const page = await p.client.get<{ rows: unknown[]; total: number }>(
        `/api/tokens/${token.id}/holders?limit=2&offset=1`,
      );
      expect(page.body).toEqual({
        rows: [
          { account: bob.id, amount: "300" },
          { account: carol.id, amount: "200" },
        ],
        total: 4,
      });
      expectFieldError(await p.client.get(`/api/tokens/${token.id}/holders?limit=0`), "limit");
      expectFieldError(await p.client.get(`/api/tokens/${token.id}/holders?limit=101`), "limit");
      expect((await p.client.get("/api/tokens/tok_nope/holders")).status).toBe(404);
    });

    it("answers a balance of 0 for an unknown account and 404 for an unknown token", async () => {
      const res = await p.client.get(`/api/tokens/${token.id}/balances/usr_nobody`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ tokenId: token.id, account: "usr_nobody", amount: "0" });
      expect((await p.client.get(`/api/tokens/tok_nope/balances/${alice.id}`)).status).toBe(404);
    });

    it("lists my balances with symbols", async () => {
      const res = await p.client.get<{
        rows: Array<{ tokenId: string; symbol: string; amount: string }>;
        total: number;
      }>("/api/me/balances?limit=100", { token: dave.token });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        rows: [{ tokenId: token.id, symbol: token.symbol, amount: "400" }],
        total: 1,
      });
      expect((await p.client.get("/api/me/balances")).status).toBe(401);
    });
  });

  describe("internal actions", () => {
    it("are not reachable through the gateway", async () => {
      const t = await createToken(p.client, alice.token);
      for (const path of [`/api/tokens/${t.id}/delete`, "/api/tokens/transferInternal"]) {
        const res = await post(path, { id: t.id }, alice);
        expect(res.status).toBe(404);
      }
    });

    it("transferInternal needs a key and applies a key once", async () => {
      const t = await createToken(p.client, alice.token, { initialSupply: "10" });
      const call = () =>
        p.broker.call<TransferBody, Record<string, unknown>>("tokens.transferInternal", {
          tokenId: t.id,
          from: alice.id,
          to: bob.id,
          amount: "4",
          idempotencyKey: "saga-1:step-2",
        });
      const [a, b] = await Promise.all([call(), call()]);
      expect(b).toEqual(a);
      expect(await balanceOf(p.client, t.id, bob.id)).toBe("4");
      await expect(
        p.broker.call("tokens.transferInternal", {
          tokenId: t.id,
          from: alice.id,
          to: bob.id,
          amount: "4",
        }),
      ).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
    });

    it("delete removes a token and its balances, and is idempotent", async () => {
      const t = await createToken(p.client, alice.token);
      await expect(p.broker.call("tokens.delete", { id: t.id })).resolves.toEqual({
        id: t.id,
        deleted: true,
      });
      await expect(p.broker.call("tokens.delete", { id: t.id })).resolves.toEqual({
        id: t.id,
        deleted: true,
      });
      expect((await p.client.get(`/api/tokens/${t.id}/holders`)).status).toBe(404);
      const res = await post(`/api/tokens/${t.id}/transfers`, { to: bob.id, amount: "1" }, alice);
      expect(res.status).toBe(404);
      // The symbol is free again.
      const again = await post(
        "/api/tokens",
        { name: "Again", symbol: t.symbol, decimals: 0, initialSupply: "1" },
        alice,
      );
      expect(again.status).toBe(201);
    });

    it("get answers the token for other services", async () => {
      const t = await createToken(p.client, bob.token);
      await expect(p.broker.call("tokens.get", { id: t.id })).resolves.toEqual(t);
      await expect(p.broker.call("tokens.get", { id: "tok_nope" })).rejects.toMatchObject({
        code: 404,
      });
    });
  });
});
