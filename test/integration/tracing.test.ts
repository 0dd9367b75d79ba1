import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Wallet } from "ethers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPlatform, type Platform } from "../helpers/platform";
import { waitUntil } from "../helpers/cluster";

/**
 * Secrets stay out of traces: the platform with JAEGER_ENDPOINT pointing at a stand-in
 * Jaeger collector on loopback, which keeps the raw bytes the exporter POSTs (Thrift over
 * HTTP, strings as UTF-8). Passwords, JWTs and signatures must not be among them.
 */

describe("traces sent to Jaeger", () => {
  const received: Buffer[] = [];
  let collector: http.Server;
  let p: Platform;
  const all = () => Buffer.concat(received);
  const has = (text: string) => all().includes(Buffer.from(text, "utf8"));

  beforeAll(async () => {
    collector = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push(Buffer.concat(chunks));
        res.writeHead(202).end();
      });
    });
    await new Promise<void>(resolve => collector.listen(0, "127.0.0.1", resolve));
    const { port } = collector.address() as AddressInfo;
    p = await startPlatform(["api", "users"], {
      env: { JAEGER_ENDPOINT: `http://127.0.0.1:${port}/api/traces` },
      settings: { api: { readyServices: ["users"], rateLimits: { max: 0, loginMax: 0 } } },
    });
  });
  afterAll(async () => {
    await p?.stop();
    await new Promise(resolve => collector.close(resolve));
  });

  it("records the calls, never a password, a JWT or a signature", async () => {
    const password = `pw-${randomBytes(12).toString("hex")}`;
    const wrong = `wrong-${randomBytes(12).toString("hex")}`;
    const tooShort = `s${randomBytes(2).toString("hex")}`;
    const email = `traced-${randomBytes(4).toString("hex")}@example.com`;

    const reg = await p.client.post<{ token: string; user: { id: string } }>("/api/auth/register", {
      email,
      password,
      displayName: "Traced",
    });
    expect(reg.status).toBe(201);
    const jwt = reg.body.token;
    expect((await p.client.post("/api/auth/login", { email, password })).status).toBe(200);
    expect((await p.client.post("/api/auth/login", { email, password: wrong })).status).toBe(401);
    // A validation error keeps the value it refused: the span must not.
    const short = await p.client.post("/api/auth/register", {
      email: `b-${email}`,
      password: tooShort,
      displayName: "B",
    });
    expect(short.status).toBe(400);

    const wallet = Wallet.createRandom();
    const challenge = await p.client.post<{ message: string }>(
      "/api/users/me/wallets/challenge",
      { address: wallet.address, chainId: 1 },
      { token: jwt },
    );
    expect(challenge.status).toBe(201);
    const signature = await wallet.signMessage(challenge.body.message);
    const linked = await p.client.post(
      "/api/users/me/wallets",
      { message: challenge.body.message, signature },
      { token: jwt },
    );
    expect(linked.status).toBe(201);

    // Spans did arrive: the exporter flushes every second.
    await waitUntil(() => has("users.linkWallet") && has("users.login"), 10_000);
    expect(has(email)).toBe(true);

    for (const [what, secret] of [
      ["password", password],
      ["wrong password", wrong],
      ["refused password", tooShort],
      ["JWT", jwt],
      ["JWT signature part", jwt.split(".")[2]],
      ["wallet signature", signature],
      ["wallet signature without 0x", signature.slice(2)],
    ]) {
      expect(has(secret), what).toBe(false);
    }
  });
});
