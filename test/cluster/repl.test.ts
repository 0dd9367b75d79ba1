import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NODE_FLAGS } from "../../bin/runner-args";
import { ApiClient } from "../helpers/http";
import {
  NATS_URL,
  REDIS_URL,
  ROOT,
  clusterDown,
  freePortPair,
  useCluster,
  waitUntil,
} from "../helpers/cluster";

/**
 * `npm run cluster` and `npm run repl` as a person uses them: the cluster script
 * starts the gateway (twice), users, tokens, the launch's services and nfts and market
 * in their own processes over the real NATS;
 * the REPL joins the same namespace, and commands are typed into its stdin one at a
 * time, each answer read from what it prints before the next prompt.
 */

const PROMPT = "mintmesh $ ";
// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, "");

interface Proc {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function run(script: string, env: NodeJS.ProcessEnv): Proc {
  const proc = spawn(process.execPath, [...NODE_FLAGS, script], {
    cwd: ROOT,
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let text = "";
  proc.stdout!.on("data", (b: Buffer) => (text += b.toString()));
  proc.stderr!.on("data", (b: Buffer) => (text += b.toString()));
  const exited = new Promise<number | null>(resolve => proc.once("exit", code => resolve(code)));
  return { proc, output: () => stripAnsi(text), exited };
}

/** Types one line and returns what the REPL printed until its next prompt. */
async function type(repl: Proc, line: string, timeoutMs = 15_000): Promise<string> {
  const from = repl.output().length;
  repl.proc.stdin!.write(`${line}\n`);
  return waitUntil(() => {
    const answer = repl.output().slice(from);
    return answer.endsWith(PROMPT) ? answer.slice(0, -PROMPT.length) : "";
  }, timeoutMs);
}

/** The rows of one of moleculer-repl's box tables, cells trimmed. */
function tableRows(text: string): string[][] {
  return text
    .split("\n")
    .filter(l => l.startsWith("║"))
    .map(l =>
      l
        .split(/[║│]/)
        .slice(1, -1)
        .map(c => c.trim()),
    );
}

describe.skipIf(clusterDown())("npm run cluster, then npm run repl on it", () => {
  // The namespace, its streams and the temp HOME; the processes are this file's own.
  const { namespace, tempDir } = useCluster("repl");
  const home = tempDir("repl-home");
  const password = "correct horse battery";
  let port = 0;
  let cluster: Proc;
  let repl: Proc;
  let banner = "";

  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    // The REPL keeps its history in $HOME; the test leaves the real one alone.
    HOME: home,
    TRANSPORTER: NATS_URL,
    REDIS_URL,
    NAMESPACE: namespace,
    PORT: String(port),
    DATA_DIR: path.join(home, "data"),
    CLUSTER_SERVICES: "api,users,tokens,dex,marketing,nfts,market,sagas,activity",
    // Info, so that each child prints (its start) and the prefixes can be checked.
    LOG_LEVEL: "info",
  });

  beforeAll(async () => {
    port = await freePortPair();
    cluster = run(path.join(ROOT, "dist/bin/cluster.js"), env());
    await waitUntil(() => /\[cluster\s*\] ready in/.test(cluster.output()), 50_000, 200).catch(
      async (err: Error) => {
        const ready = await new ApiClient(`http://127.0.0.1:${port}`)
          .get("/health/ready")
          .then(r => `${r.status} ${r.text}`, String);
        throw new Error(
          `${err.message}; /health/ready: ${ready}\n${cluster.output().slice(-4000)}`,
        );
      },
    );
    repl = run(path.join(ROOT, "dist/bin/repl.js"), env());
    banner = await waitUntil(() => (repl.output().endsWith(PROMPT) ? repl.output() : ""), 20_000);
  });

  afterAll(async () => {
    repl?.proc.kill("SIGKILL");
    if (cluster && cluster.proc.exitCode === null) {
      cluster.proc.kill("SIGTERM");
      await Promise.race([cluster.exited, new Promise(r => setTimeout(r, 15_000))]);
    }
    // Children are in their own process groups: never leave one behind.
    for (const m of cluster?.output().matchAll(/: pid (\d+) /g) ?? []) {
      try {
        process.kill(Number(m[1]), "SIGKILL");
      } catch {
        // already gone
      }
    }
  });

  it("starts each service in its own process, with a second gateway on the next port", async () => {
    const pids = [
      ...cluster.output().matchAll(/\[cluster\s*\] (\S+): pid (\d+) \(SERVICES=(\w+)/g),
    ];
    expect(pids.map(m => [m[1], m[3]])).toEqual([
      ["users", "users"],
      ["tokens", "tokens"],
      ["nfts", "nfts"],
      ["market", "market"],
      ["activity", "activity"],
      ["dex", "dex"],
      ["marketing", "marketing"],
      ["sagas", "sagas"],
      ["api", "api"],
      ["api-2", "api"],
    ]);
    expect(new Set(pids.map(m => m[2])).size).toBe(pids.length);
    // Output is prefixed with the name of the process that wrote it.
    expect(cluster.output()).toMatch(/^\[users\s*\] /m);
    for (const p of [port, port + 1]) {
      const res = await new ApiClient(`http://127.0.0.1:${p}`).get("/health/ready");
      expect(res.status).toBe(200);
    }
  });

  it("joins the cluster's namespace and sees its nodes", async () => {
    expect(banner).toContain(`Joined namespace "${namespace}"`);
    expect(banner).toMatch(/10 other nodes/);

    const services = tableRows(await type(repl, "services"));
    const nodesOf = (name: string) => services.find(r => r[0] === name)?.at(-1);
    expect(nodesOf("api")).toBe("2");
    expect(nodesOf("users")).toBe("1");
  });

  it("health lists every node and service, and names what is missing", async () => {
    const answer = await type(repl, "health");
    expect(answer).toMatch(/Nodes: 10 available, 0 unavailable/);
    expect(answer).toMatch(/^\s+api-2-\S+\s+available\s+\d+ ms\s+api$/m);
    expect(answer).toMatch(/^\s+users-\S+\s+available\s+\d+ ms\s+users$/m);
    expect(answer).toMatch(/^\s+api\s+2\/2\s+ok$/m);
    expect(answer).toMatch(/^\s+users\s+1\/1\s+ok$/m);
    expect(answer).toContain("Cluster: healthy");

    const degraded = await type(repl, "health --expect users,analytics");
    expect(degraded).toMatch(/^\s+analytics\s+0\/0\s+MISSING$/m);
    expect(degraded).toContain("Cluster: DEGRADED, no available node for analytics");
  });

  it("register creates a user the gateway can log in", async () => {
    const email = `repl-${namespace}@example.com`;
    const answer = await type(repl, `register ${email} "${password}" "Repl User"`);
    const m = /^>> Registered (usr_\w+) <(\S+)> "Repl User"$/m.exec(answer);
    expect(m, answer).not.toBeNull();
    expect(m![2]).toBe(email);
    expect(answer).toMatch(/^>> token: [\w-]+\.[\w-]+\.[\w-]+$/m);

    const login = await new ApiClient(`http://127.0.0.1:${port}`).post<{ user: { id: string } }>(
      "/api/auth/login",
      { email, password },
    );
    expect(login.status).toBe(200);
    expect(login.body.user.id).toBe(m![1]);

    // A second registration gets the service's own answer, and the session goes on.
    const again = await type(repl, `register ${email} "${password}" "Repl User"`);
    expect(again).toContain(">> ERROR (CONFLICT 409): Email is already registered");
    expect(again).toContain("email: already registered");
  });

  it("call works with flags and with a JSON body", async () => {
    const email = `call-${namespace}@example.com`;
    const viaFlags = await type(
      repl,
      `call users.register --email ${email} --password "${password}" --displayName Caller`,
    );
    expect(viaFlags).toContain(">> Response:");
    expect(viaFlags).toContain(`email: '${email}'`);
    const id = /id: '(usr_\w+)'/.exec(viaFlags)?.[1];
    expect(id).toBeDefined();

    const viaJson = await type(
      repl,
      `call users.login '${JSON.stringify({ email, password: "wrong password" })}'`,
    );
    expect(viaJson).toContain("Invalid email or password");

    const ok = await type(repl, `call users.login '${JSON.stringify({ email, password })}'`);
    expect(ok).toContain(`id: '${id}'`);
  });

  it("mktoken creates a token whose holder balances shows", async () => {
    const reg = await type(repl, `register maker-${namespace}@example.com "${password}" Maker`);
    const userId = /Registered (usr_\w+)/.exec(reg)![1];
    // More digits than a JavaScript number holds: the supply must stay exact.
    const supply = "123456789012345678901234567890";
    const made = await type(
      repl,
      `mktoken ${userId} RPL${namespace.slice(-4).toUpperCase()} ${supply}`,
    );
    const m = new RegExp(
      `^>> Created token (\\S+) .* supply ${supply} .* held by ${userId}$`,
      "m",
    ).exec(made);
    expect(m, made).not.toBeNull();

    // Bad input gets the validator's answer, naming the field.
    const bad = await type(repl, `mktoken ${userId} bad! 100`);
    expect(bad).toMatch(/^>> ERROR \(VALIDATION_ERROR 422\)/m);
    expect(bad).toMatch(/^\s+symbol: /m);

    const holders = await type(repl, `balances ${m![1]}`);
    expect(holders).toContain(`>> ${m![1]}: 1 holder`);
    expect(holders).toMatch(new RegExp(`^\\s+${userId}\\s+${supply}$`, "m"));

    // The creator's history (activity.list), once the event has reached the activity node.
    const history = await waitUntil(
      async () => {
        const h = await type(repl, `activity ${userId}`);
        return h.includes("token.created") ? h : "";
      },
      15_000,
      200,
    );
    expect(history).toContain(`>> ${userId}: 1 row`);
    expect(history).toMatch(
      new RegExp(`^\\s+[0-9a-z]{11}\\s+\\S+\\s+token\\.created\\s+${m![1]}`, "m"),
    );
    const typo = await type(repl, `activity ${userId} --cursor nope`);
    expect(typo).toMatch(/^>> ERROR \(VALIDATION_ERROR 400\)/m);
    expect(typo).toMatch(/^\s+cursor: /m);
  });

  it("launch runs a token launch to its end: completed, or undone when it cannot finish", async () => {
    const reg = await type(repl, `register launcher-${namespace}@example.com "${password}" L`);
    const userId = /Registered (usr_\w+)/.exec(reg)![1];
    const symbol = `LN${namespace.slice(-4).toUpperCase()}`;
    // Past 2^53, as typed: the amounts must stay exact.
    const supply = "900000000000000000000";
    const made = await type(
      repl,
      `launch ${userId} ${symbol} ${supply} 300000000000000000000 --budget 5`,
    );
    const m = new RegExp(
      `^>> Launch (sag_\\w+) completed: token (tok_\\w+) ${symbol} supply ${supply}, ` +
        `pool pool_tok_\\w+ holds 300000000000000000000$`,
      "m",
    ).exec(made);
    expect(m, made).not.toBeNull();
    expect(made).toMatch(/^\s+addLiquidity\s+done$/m);
    const holders = await type(repl, `balances ${m![2]}`);
    expect(holders).toContain(`>> ${m![2]}: 2 holders`);
    expect(holders).toMatch(new RegExp(`^\\s+pool_${m![2]}\\s+300000000000000000000$`, "m"));

    const undone = await type(repl, `launch ${userId} ${symbol}X 10 11`);
    expect(undone).toMatch(
      /^>> Launch sag_\w+ compensated: addLiquidity failed \(INSUFFICIENT_FUNDS: /m,
    );
    expect(undone).toMatch(/^\s+createToken\s+compensated$/m);
  });

  it("mint creates a collection and mints into it; buy runs a purchase to its end", async () => {
    const registered = async (name: string) => {
      const out = await type(
        repl,
        `register ${name}-${namespace}@example.com "${password}" ${name}`,
      );
      return { id: /Registered (usr_\w+)/.exec(out)![1], token: /token: (\S+)/.exec(out)![1] };
    };
    const seller = await registered("seller");
    const buyer = await registered("buyer");
    const symbol = `NF${namespace.slice(-4).toUpperCase()}`;
    const minted = await type(repl, `mint ${seller.id} ${symbol} "Piece one" --royalty 1000`);
    expect(minted).toMatch(
      new RegExp(`^>> Created collection col_\\w+ ${symbol} \\(royalty 1000 bps\\)$`, "m"),
    );
    const m = /^>> Minted (nft_\w+) #1 of (col_\w+) to (usr_\w+)$/m.exec(minted);
    expect(m, minted).not.toBeNull();
    expect(m![3]).toBe(seller.id);
    // Into the same collection: serial 2. Someone else may not mint there.
    expect(await type(repl, `mint ${seller.id} ${m![2]} Two`)).toMatch(/^>> Minted nft_\w+ #2 /m);
    expect(await type(repl, `mint ${buyer.id} ${m![2]} Three`)).toMatch(/ERROR \(FORBIDDEN 403\)/);

    const token = /^>> Created token (tok_\w+) /m.exec(
      await type(
        repl,
        `mktoken ${buyer.id} BY${namespace.slice(-4).toUpperCase()} 1000 --decimals 0`,
      ),
    )![1];
    const api = new ApiClient(`http://127.0.0.1:${port}`);
    const listing = await api.post<{ id: string }>(
      "/api/market/listings",
      { nftId: m![1], priceTokenId: token, price: "600" },
      { token: seller.token },
    );
    expect(listing.status, listing.text).toBe(201);

    const bought = await type(repl, `buy ${buyer.id} ${listing.body.id}`);
    expect(bought).toMatch(
      new RegExp(
        `^>> Listing ${listing.body.id} sold \\(saga sag_\\w+\\): ${m![1]} from ${seller.id} for 600 of ${token}$`,
        "m",
      ),
    );
    const holders = await type(repl, `balances ${token}`);
    expect(holders).toMatch(new RegExp(`^\\s+${buyer.id}\\s+400$`, "m"));
    expect(holders).toMatch(new RegExp(`^\\s+${seller.id}\\s+600$`, "m"));
    // Sold: a second purchase is refused.
    expect(await type(repl, `buy ${buyer.id} ${listing.body.id}`)).toMatch(
      /ERROR \(CONFLICT 409\)/,
    );
  });

  it("leaves on end of input, and the cluster stops on SIGTERM", async () => {
    repl.proc.stdin!.end();
    expect(await repl.exited).toBe(0);

    const pids = [...cluster.output().matchAll(/: pid (\d+) /g)].map(m => Number(m[1]));
    cluster.proc.kill("SIGTERM");
    expect(await cluster.exited).toBe(0);
    expect(cluster.output()).toMatch(/\[cluster\s*\] stopped$/m);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });
});
