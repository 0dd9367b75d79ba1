import { describe, expect, it } from "vitest";
import {
  IdempotencyGate,
  MemoryAnswers,
  ReplayResponse,
  isKeptError,
  requestFingerprint,
  type AnswerStore,
  type StoredResponse,
} from "../../../lib/gateway/idempotency";
import { ClientError, inProgress } from "../../../lib/shared/errors";

const quiet = { warn: () => undefined };

describe("lib/idempotency", () => {
  it("fingerprints method, path with its query, and body", () => {
    const base = requestFingerprint("POST", "/api/tokens/t/transfers", { amount: "1" });
    expect(requestFingerprint("POST", "/api/tokens/t/transfers", { amount: "1" })).toBe(base);
    for (const other of [
      requestFingerprint("POST", "/api/tokens/t/transfers?amount=500", { amount: "1" }),
      requestFingerprint("PUT", "/api/tokens/t/transfers", { amount: "1" }),
      requestFingerprint("POST", "/api/tokens/t/transfers", { amount: "2" }),
    ]) {
      expect(other).not.toBe(base);
    }
  });

  it("replays a finished key, refuses another request or a second in flight", async () => {
    const gate = new IdempotencyGate(new MemoryAnswers({ maxEntries: 10, maxSize: 10_000 }), quiet);
    const first = await gate.begin("usr_1", "k", "fp");
    await expect(gate.begin("usr_1", "k", "fp")).rejects.toMatchObject({ code: 409 });
    await gate.finish(first, { status: 201, body: { id: 1 } });
    await expect(gate.begin("usr_1", "k", "fp")).rejects.toBeInstanceOf(ReplayResponse);
    await expect(gate.begin("usr_1", "k", "other")).rejects.toMatchObject({ code: 409 });
    // Another user's key of the same name is its own.
    await gate.finish(await gate.begin("usr_2", "k", "fp"));
    // Finished without an answer: the key is free again.
    await gate.finish(await gate.begin("usr_3", "k", "fp"));
    expect(await gate.begin("usr_3", "k", "fp")).toBeTruthy();
  });

  it("keeps answers within its bounds", async () => {
    const answers = new MemoryAnswers({ maxEntries: 2, maxSize: 1_000 });
    const a: StoredResponse = { fingerprint: "f", status: 200, body: "x" };
    await answers.set("1", a);
    await answers.set("2", a);
    await answers.set("3", a);
    expect(await answers.get("1")).toBeNull();
    await answers.set("big", { ...a, body: "y".repeat(2_000) });
    expect(await answers.get("big")).toBeNull();
  });

  it("logs a store that fails to keep an answer, and frees the key", async () => {
    const logged: string[] = [];
    const failing: AnswerStore = {
      get: async () => null,
      set: async () => {
        throw new Error("NOPERM");
      },
    };
    const gate = new IdempotencyGate(failing, { warn: (_o, msg) => void logged.push(msg) });
    await gate.finish(await gate.begin("u", "k", "f"), { status: 200, body: {} });
    expect(logged).toEqual(["Idempotency-Key answer not kept"]);
    expect(await gate.begin("u", "k", "f")).toBeTruthy();
  });

  it("keeps what the action decided, never gateway-side failures or 'in progress'", () => {
    const clientErr = new ClientError("Nope", 422, "INSUFFICIENT_FUNDS");
    expect(isKeptError(clientErr, 422, "INSUFFICIENT_FUNDS")).toBe(true);
    expect(isKeptError(new Error("v"), 400, "VALIDATION_ERROR")).toBe(true);
    expect(isKeptError(inProgress("busy"), 409, "CONFLICT")).toBe(false);
    expect(isKeptError(new ClientError("x", 401, "UNAUTHORIZED"), 401, "UNAUTHORIZED")).toBe(false);
    expect(isKeptError(new Error("rate"), 429, "RATE_LIMITED")).toBe(false);
    expect(isKeptError(new Error("down"), 503, "SERVICE_UNAVAILABLE")).toBe(false);
  });
});
