import { spawn } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runnerArgs } from "../../bin/runner-args";
import { ROOT } from "../helpers/cluster";

/**
 * With NODE_ENV=production a node refuses to start, naming the variable, on a JWT secret
 * anyone could know and on wallet-link messages that would name localhost. The compiled
 * nodes as `npm run serve` starts them (run `npm run build` first); no NATS needed.
 */

const GOOD_SECRET = "3f9c1a7e5b2d8c4f6a0e9b1d3c5f7a2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a";

interface Outcome {
  code: number | null;
  output: string;
}

/** Starts one node hosting `services` with `env` over production defaults; its exit or its start. */
function startNode(services: string[], env: Record<string, string | undefined>): Promise<Outcome> {
  const proc = spawn(process.execPath, runnerArgs(ROOT), {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      NODE_ENV: "production",
      SERVICEDIR: path.join(ROOT, "dist/services"),
      SERVICES: services.join(","),
      NAMESPACE: `guards-${process.pid}`,
      DATA_DIR: ":memory:",
      PORT: "0",
      LOG_LEVEL: "info",
      ...Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  proc.stdout.on("data", (b: Buffer) => (output += b.toString()));
  proc.stderr.on("data", (b: Buffer) => (output += b.toString()));
  return new Promise(resolve => {
    const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    proc.stdout.on("data", () => {
      // It started: it would not have refused. Stop it and say so.
      if (/started successfully/.test(output)) proc.kill("SIGTERM");
    });
    proc.once("exit", code => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

const SIWE = { SIWE_DOMAIN: "app.mintmesh.example", SIWE_URI: "https://app.mintmesh.example" };

describe("production guards", () => {
  it.each([
    ["unset", undefined],
    ["one byte", "x"],
    ["31 bytes", "a".repeat(31)],
    ["the public dev secret", "mintmesh-dev-secret-change-me"],
    ["the k8s example's placeholder", "replace-with-at-least-32-random-bytes"],
    ["change-me, made long", "change-me-change-me-change-me-change-me"],
  ])("refuses a gateway whose JWT_SECRET is %s, naming it", async (_what, secret) => {
    const { code, output } = await startNode(["api"], { JWT_SECRET: secret });
    expect(code, output).not.toBe(0);
    expect(code).not.toBeNull();
    expect(output).toMatch(/JWT_SECRET/);
    expect(output).not.toMatch(/started successfully/);
  });

  it.each(["SIWE_DOMAIN", "SIWE_URI"])("refuses a users node without %s, naming it", async name => {
    const { code, output } = await startNode(["users"], {
      JWT_SECRET: GOOD_SECRET,
      ...SIWE,
      [name]: undefined,
    });
    expect(code, output).not.toBe(0);
    expect(output).toMatch(new RegExp(`${name} must be set`));
    expect(output).not.toMatch(/started successfully/);
  });

  it("starts a gateway and a users node with a strong secret and the SIWE site set", async () => {
    const { output } = await startNode(["api", "users"], { JWT_SECRET: GOOD_SECRET, ...SIWE });
    expect(output).toMatch(/started successfully/);
    expect(output).not.toMatch(/JWT_SECRET|SIWE_/);
  });
});
