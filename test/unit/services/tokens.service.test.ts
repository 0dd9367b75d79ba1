import { ServiceBroker } from "moleculer";
import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import TokensService from "../../../services/tokens.service";
import UsersService from "../../../services/users.service";
import type { Token } from "../../../lib/events/domain";
import type { TransferRecord } from "../../../lib/tokens/ledger";
import type { Meta } from "../../../lib/shared/context";

/**
 * The tokens service in a broker of its own, as the Moleculer TypeScript template tests
 * services: actions called directly with the `meta` the gateway would set.
 */

const broker = new ServiceBroker({
  logger: false,
  middlewares: [ChannelsMiddleware({ adapter: "Fake", context: true } as never)],
});
broker.createService(UsersService);
broker.createService(TokensService);

let alice: string;
let bob: string;
const as = (id: string, extra: Meta = {}) => ({ meta: { user: { id }, ...extra } as Meta });

beforeAll(async () => {
  await broker.start();
  const register = async (name: string) =>
    (
      await broker.call<{ user: { id: string } }, object>("users.register", {
        email: `${name}@example.com`,
        password: "correct horse battery",
        displayName: name,
      })
    ).user.id;
  alice = await register("alice");
  bob = await register("bob");
});
afterAll(() => broker.stop());

const create = (symbol: string, supply = "1000") =>
  broker.call<Token, object>(
    "tokens.create",
    { name: symbol, symbol, decimals: 0, initialSupply: supply },
    as(alice),
  );

describe("tokens service", () => {
  it("creates a token whose creator holds the supply, answering 201 with its Location", async () => {
    const ctxMeta: Meta = { user: { id: alice } };
    const token = await broker.call<Token, object>(
      "tokens.create",
      { name: "Mint", symbol: "MNT", decimals: 18, initialSupply: "1000" },
      { meta: ctxMeta },
    );
    expect(token).toMatchObject({ symbol: "MNT", totalSupply: "1000", creatorId: alice });
    expect(ctxMeta).toMatchObject({ $statusCode: 201, $location: `/api/tokens/${token.id}` });
    const bal = await broker.call("tokens.balance", { id: token.id, account: alice });
    expect(bal).toEqual({ tokenId: token.id, account: alice, amount: "1000" });
  });

  it("validates params: a number amount and a lower-case symbol are refused naming the field", async () => {
    await expect(
      broker.call(
        "tokens.create",
        { name: "x", symbol: "low", decimals: 0, initialSupply: "1" },
        as(alice),
      ),
    ).rejects.toMatchObject({ type: "VALIDATION_ERROR", data: [{ field: "symbol" }] });
    const token = await create("VAL");
    await expect(
      broker.call("tokens.transfer", { id: token.id, to: bob, amount: 5 }, as(alice)),
    ).rejects.toMatchObject({
      type: "VALIDATION_ERROR",
      data: [{ field: "amount" }, { field: "amount" }],
    });
  });

  it("refuses anonymous writes with 401", async () => {
    await expect(
      broker.call("tokens.create", { name: "A", symbol: "ANON", decimals: 0, initialSupply: "1" }),
    ).rejects.toMatchObject({ code: 401, type: "UNAUTHORIZED" });
  });

  it("transfers once per Idempotency-Key and lists the holders largest first", async () => {
    const token = await create("IDEM");
    const send = () =>
      broker.call<TransferRecord, object>(
        "tokens.transfer",
        { id: token.id, to: bob, amount: "300" },
        as(alice, { idempotencyKey: `${alice}:k1` }),
      );
    const first = await send();
    expect(await send()).toEqual(first);
    const holders = await broker.call("tokens.holders", { id: token.id });
    expect(holders).toEqual({
      rows: [
        { account: alice, amount: "700" },
        { account: bob, amount: "300" },
      ],
      total: 2,
    });
  });

  it("answers 404 naming the field for an unknown account", async () => {
    const token = await create("NOACC");
    await expect(
      broker.call("tokens.transfer", { id: token.id, to: "usr_nobody", amount: "1" }, as(alice)),
    ).rejects.toMatchObject({ code: 404, data: [{ field: "to" }] });
  });

  it("moves tokens for other services with a key scoped to the caller, and deletes a token", async () => {
    const token = await create("SVC");
    const params = { tokenId: token.id, from: alice, to: bob, amount: "10", idempotencyKey: "s1" };
    const first = await broker.call<TransferRecord, object>("tokens.transferInternal", params);
    expect(await broker.call("tokens.transferInternal", params)).toEqual(first);
    expect(await broker.call("tokens.delete", { id: token.id })).toEqual({
      id: token.id,
      deleted: true,
    });
    await expect(broker.call("tokens.get", { id: token.id })).rejects.toMatchObject({ code: 404 });
  });

  it("publishes every event it wrote to the outbox", async () => {
    await create("OUTB");
    for (let i = 0; i < 50; i++) {
      const stats = await broker.call<{ unsent: number }>("tokens.outboxStats");
      if (stats.unsent === 0) break;
      await new Promise(r => setTimeout(r, 20));
    }
    expect(await broker.call("tokens.outboxStats")).toMatchObject({ unsent: 0 });
  });
});

describe("tokens settings", () => {
  it("takes its settings from the schema, so a test or a deployment can set them", async () => {
    const b = new ServiceBroker({ logger: false, nodeID: "settings-test" });
    const svc = b.createService({
      ...TokensService,
      settings: { ...TokensService.settings, recoveryGraceMs: 12_345, accountTtlMs: 1 },
    });
    expect(svc.settings).toMatchObject({ recoveryGraceMs: 12_345, accountTtlMs: 1 });
    await b.start();
    await b.stop();
  });
});
