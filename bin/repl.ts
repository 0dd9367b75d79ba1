import os from "node:os";
import type { REPLServer } from "node:repl";
import {
  ServiceBroker,
  type BrokerOptions,
  type Errors,
  type Middleware,
  type ReplOptions,
} from "moleculer";
import config from "../moleculer.config";

/**
 * `npm run repl`: joins the running cluster (same TRANSPORTER and NAMESPACE as its
 * nodes) as a node of its own that hosts no service, and opens moleculer-repl on it
 * with the project's moleculer 0.15. The built-in commands (`call`, `dcall`, `emit`,
 * `nodes`, `services`, `actions`, `cache`, …) work on the whole cluster; the custom
 * ones below do the common jobs without remembering param names.
 *
 * (moleculer-cli's `moleculer connect` bundles moleculer 0.14, whose protocol the
 * 0.15 nodes refuse: use this instead.)
 *
 * `npm run dev` gets the same commands: its moleculer-runner takes this file as its
 * config (the default export at the end), so the REPL of the runner has them too.
 */

type ReplCommand = NonNullable<ReplOptions["customCommands"]>[number];

/** What moleculer-repl hands a custom command: declared `<args>` by name, plus `options`. */
interface CommandArgs {
  options: Record<string, unknown>;
  rawCommand: string;
  [arg: string]: unknown;
}

interface CommandDef {
  command: string;
  description: string;
  options?: Array<{ option: string; description: string }>;
  action(broker: ServiceBroker, args: CommandArgs): Promise<void>;
}

const DEFAULT_TRANSPORTER = "nats://127.0.0.1:4222";

const out = (...lines: string[]) => {
  for (const line of lines) process.stdout.write(`${line}\n`);
};

/** Left-aligned columns: plain text reads well in a terminal and in a pasted bug report. */
function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map(row =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i])))
      .join("  ")
      .trimEnd(),
  );
}

/** An error as the person typing needs it: its type, message and the fields that were wrong. */
function printError(err: unknown): void {
  const e = err as Partial<Errors.MoleculerError>;
  const kind = [e.type, e.code].filter(v => v !== undefined && v !== "").join(" ");
  out(`>> ERROR${kind ? ` (${kind})` : ""}: ${e.message ?? String(err)}`);
  const data = e.data as unknown;
  if (Array.isArray(data)) {
    for (const item of data as Array<{ field?: string; message?: string }>) {
      if (item && typeof item === "object" && item.field)
        out(`   ${item.field}: ${item.message ?? "invalid"}`);
    }
  } else if (data && typeof data === "object" && Object.keys(data).length > 0) {
    out(`   ${JSON.stringify(data)}`);
  }
}

/** Errors are printed, never thrown: a typo must not end the session. */
function command(def: CommandDef): ReplCommand {
  return {
    command: def.command,
    description: def.description,
    options: def.options,
    async action(broker, args) {
      try {
        // moleculer-repl hands vorpal's untyped args object.
        await def.action(broker, args as unknown as CommandArgs);
      } catch (err) {
        printError(err);
      }
    },
  };
}

const str = (v: unknown): string => (v === undefined || v === null ? "" : String(v));

/**
 * The call options of a command that acts as `userId` (the gateway would put the JWT's
 * user in meta; the REPL acts as that user), with `--key` as its idempotency key, plus
 * `suffix` when one command makes several calls.
 */
function asUser(userId: string, args: CommandArgs, suffix = "") {
  const key = str(args.options.key);
  return {
    meta: { user: { id: userId }, ...(key ? { idempotencyKey: `repl:${key}${suffix}` } : {}) },
  };
}

/** `--key`, which asUser reads. */
const keyOption = (what: string) => ({
  option: "--key <idempotencyKey>",
  description: `repeat a ${what} safely`,
});

/** The options of the commands that create a token; decimalsOf reads `--decimals`. */
const TOKEN_OPTIONS = [
  { option: "--name <name>", description: "token name (default: the symbol)" },
  { option: "--decimals <n>", description: "0-18 (default 18)" },
];

/** `--decimals`, 18 when not given. */
const decimalsOf = (args: CommandArgs): number =>
  args.options.decimals === undefined ? 18 : Number(args.options.decimals);

interface NodeInfo {
  id: string;
  available: boolean;
  local: boolean;
  hostname: string | null;
  services?: Array<{ name: string }>;
}
interface ServiceInfo {
  name: string;
  available: boolean;
  nodeID: string;
}

const health = command({
  command: "health",
  description: "Nodes and services of the cluster, with availability and ping times",
  options: [
    {
      option: "--expect <services>",
      description: "comma-separated services that must have an available node",
    },
  ],
  async action(broker, args) {
    // Moleculer types these lists as its internal registry classes, not the JSON they are.
    const nodes = broker.registry.getNodeList({
      onlyAvailable: false,
      withServices: true,
    }) as unknown as NodeInfo[];
    const services = broker.registry.getServiceList({
      onlyAvailable: false,
      skipInternal: true,
    }) as unknown as ServiceInfo[];
    // Typed as one pong, but without a nodeID it answers a map of every node's.
    const pongs = (await broker.ping(undefined, 1000)) as unknown as Record<
      string,
      { elapsedTime: number } | null
    >;

    const servicesOf = (n: NodeInfo) => [
      ...new Set((n.services ?? []).map(s => s.name).filter(s => !s.startsWith("$"))),
    ];
    // This node counts when it hosts services (`npm run dev`), not as `npm run repl`'s bare node.
    const shown = nodes
      .filter(n => !n.local || servicesOf(n).length > 0)
      .sort((a, b) => a.id.localeCompare(b.id));
    const up = shown.filter(n => n.available).length;
    out(
      `Nodes: ${up} available, ${shown.length - up} unavailable (namespace "${broker.namespace}")`,
    );
    out(
      ...table([
        ["NODE", "STATUS", "PING", "SERVICES"],
        ...shown.map(n => [
          n.id,
          n.available ? "available" : "UNAVAILABLE",
          n.local ? "local" : pongs[n.id] ? `${pongs[n.id]!.elapsedTime} ms` : "-",
          servicesOf(n).join(",") || "-",
        ]),
      ]).map(l => `  ${l}`),
    );

    const byName = new Map<string, { up: number; total: number }>();
    for (const s of services) {
      const entry = byName.get(s.name) ?? { up: 0, total: 0 };
      entry.total += 1;
      if (s.available) entry.up += 1;
      byName.set(s.name, entry);
    }
    const expected = str(args.options.expect)
      .split(",")
      .map(s => s.trim())
      .filter(Boolean);
    for (const name of expected) if (!byName.has(name)) byName.set(name, { up: 0, total: 0 });

    const names = [...byName.keys()].sort();
    out(`Services: ${names.length}`);
    out(
      ...table([
        ["SERVICE", "NODES", "STATUS"],
        ...names.map(name => {
          const { up: u, total } = byName.get(name)!;
          return [name, `${u}/${total}`, u > 0 ? "ok" : total > 0 ? "DOWN" : "MISSING"];
        }),
      ]).map(l => `  ${l}`),
    );
    const down = names.filter(n => byName.get(n)!.up === 0);
    out(
      down.length === 0
        ? "Cluster: healthy"
        : `Cluster: DEGRADED, no available node for ${down.join(", ")}`,
    );
  },
});

interface AuthResult {
  user: { id: string; email: string; displayName: string };
  token: string;
}

/** What register and login print: the user and a JWT to paste into an Authorization header. */
function printAuth(verb: string, res: AuthResult, extra = ""): void {
  out(`>> ${verb} ${res.user.id} <${res.user.email}>${extra}`, `>> token: ${res.token}`);
}

const register = command({
  command: "register <email> <password> <name>",
  description: "Register a user (users.register); quote a name with spaces",
  async action(broker, args) {
    const res = await broker.call<AuthResult, object>("users.register", {
      email: str(args.email),
      password: str(args.password),
      displayName: str(args.name),
    });
    printAuth("Registered", res, ` "${res.user.displayName}"`);
  },
});

const login = command({
  command: "login <email> <password>",
  description: "Log in (users.login) and print the user id and a JWT",
  async action(broker, args) {
    const credentials = { email: str(args.email), password: str(args.password) };
    printAuth("Logged in", await broker.call<AuthResult, object>("users.login", credentials));
  },
});

interface TokenResult {
  id: string;
  symbol: string;
  name: string;
  decimals: number;
  totalSupply: string;
  creatorId: string;
}

const mktoken = command({
  command: "mktoken <creatorId> <symbol> <supply>",
  description:
    "Create a token as user <creatorId> (tokens.create); supply in base units, kept as a string",
  options: [...TOKEN_OPTIONS, keyOption("create")],
  async action(broker, args) {
    const creatorId = str(args.creatorId);
    const symbol = str(args.symbol);
    // The supply arrives as typed: `call` would parse it as a Number and lose digits past 2^53.
    const supply = str(args.supply);
    const token = await broker.call<TokenResult, object>(
      "tokens.create",
      {
        name: str(args.options.name) || symbol,
        symbol,
        decimals: decimalsOf(args),
        initialSupply: supply,
      },
      asUser(creatorId, args),
    );
    out(
      `>> Created token ${token.id} ${token.symbol} "${token.name}" supply ${token.totalSupply} ` +
        `(decimals ${token.decimals}) held by ${token.creatorId}`,
    );
  },
});

interface SagaResult {
  id: string;
  state: string;
  steps: Array<{ name: string; state: string; error?: { type: string; message: string } }>;
  result?: { token: TokenResult; pool: { account: string; reserve: string } };
  error?: { step: string; type: string; message: string };
}

const launch = command({
  command: "launch <creatorId> <symbol> <supply> <liquidity>",
  description:
    "Launch a token as user <creatorId> (sagas.launch): create it, put <liquidity> of it in its pool, activate its marketing",
  options: [
    ...TOKEN_OPTIONS,
    { option: "--budget <amount>", description: "marketing budget in base units" },
    keyOption("launch"),
  ],
  async action(broker, args) {
    const creatorId = str(args.creatorId);
    const symbol = str(args.symbol);
    const budget = str(args.options.budget);
    const saga = await broker.call<SagaResult, object>(
      "sagas.launch",
      {
        // Amounts as typed: a Number would lose digits past 2^53.
        token: {
          name: str(args.options.name) || symbol,
          symbol,
          decimals: decimalsOf(args),
          initialSupply: str(args.supply),
        },
        liquidity: { amount: str(args.liquidity) },
        ...(budget ? { marketing: { budget } } : {}),
      },
      asUser(creatorId, args),
    );
    const r = saga.result;
    const e = saga.error;
    out(
      `>> Launch ${saga.id} ${saga.state}` +
        (r
          ? `: token ${r.token.id} ${r.token.symbol} supply ${r.token.totalSupply}, pool ${r.pool.account} holds ${r.pool.reserve}`
          : e
            ? `: ${e.step} failed (${e.type}: ${e.message})`
            : ""),
    );
    out(...table(saga.steps.map(s => [s.name, s.state, s.error?.type ?? ""])).map(l => `   ${l}`));
  },
});

interface CollectionResult {
  id: string;
  symbol: string;
  royaltyBps: number;
}
interface NftResult {
  id: string;
  collectionId: string;
  serial: number;
  ownerId: string;
}

const mint = command({
  command: "mint <userId> <collection> <name>",
  description:
    "Mint an NFT named <name> as user <userId> (nfts.mint) into <collection>: a collection id, or a new symbol (A-Z, 0-9) to create that collection first",
  options: [
    { option: "--to <account>", description: "the owner (default: the minter)" },
    { option: "--royalty <bps>", description: "a new collection's royalty, 0-10000 (default 0)" },
    { option: "--max <n>", description: "a new collection's maxSupply (default: none)" },
    keyOption("mint"),
  ],
  async action(broker, args) {
    const userId = str(args.userId);
    let collectionId = str(args.collection);
    if (!collectionId.startsWith("col_")) {
      const c = await broker.call<CollectionResult, object>(
        "nfts.createCollection",
        {
          name: collectionId,
          symbol: collectionId,
          ...(args.options.royalty !== undefined
            ? { royaltyBps: Number(args.options.royalty) }
            : {}),
          ...(args.options.max !== undefined ? { maxSupply: Number(args.options.max) } : {}),
        },
        asUser(userId, args, ":collection"),
      );
      out(`>> Created collection ${c.id} ${c.symbol} (royalty ${c.royaltyBps} bps)`);
      collectionId = c.id;
    }
    const to = str(args.options.to);
    const nft = await broker.call<NftResult, object>(
      "nfts.mint",
      { id: collectionId, metadata: { name: str(args.name) }, ...(to ? { to } : {}) },
      asUser(userId, args),
    );
    out(`>> Minted ${nft.id} #${nft.serial} of ${nft.collectionId} to ${nft.ownerId}`);
  },
});

interface BuyResult {
  listing: {
    id: string;
    nftId: string;
    sellerId: string;
    priceTokenId: string;
    price: string;
    state: string;
  };
  sagaId: string;
}

const buy = command({
  command: "buy <buyerId> <listingId>",
  description:
    "Buy a listing as user <buyerId> (market.buy, a purchase saga): pay the price, royalty to the collection's owner, the NFT to the buyer",
  options: [keyOption("purchase")],
  async action(broker, args) {
    const res = await broker.call<BuyResult, object>(
      "market.buy",
      { id: str(args.listingId) },
      asUser(str(args.buyerId), args),
    );
    const l = res.listing;
    out(
      `>> Listing ${l.id} ${l.state} (saga ${res.sagaId}): ${l.nftId} from ${l.sellerId} ` +
        `for ${l.price} of ${l.priceTokenId}`,
    );
  },
});

interface Holder {
  account: string;
  amount: string;
}

const balances = command({
  command: "balances <tokenId>",
  description: "Holders of a token, largest first (tokens.holders)",
  options: [{ option: "--limit <n>", description: "1-100 (default 20)" }],
  async action(broker, args) {
    const tokenId = str(args.tokenId);
    const params: Record<string, unknown> = { id: tokenId };
    if (args.options.limit !== undefined) params.limit = Number(args.options.limit);
    const res = await broker.call<Holder[] | { rows: Holder[]; total: number }, object>(
      "tokens.holders",
      params,
    );
    const rows = Array.isArray(res) ? res : res.rows;
    const total = Array.isArray(res) ? res.length : res.total;
    out(`>> ${tokenId}: ${total} holder${total === 1 ? "" : "s"}`);
    if (rows.length > 0)
      out(
        ...table([["ACCOUNT", "AMOUNT"], ...rows.map(h => [h.account, str(h.amount)])]).map(
          l => `   ${l}`,
        ),
      );
  },
});

interface ActivityPageRows {
  rows: Array<{
    cursor: string;
    type: string;
    at: string;
    tokenId?: string;
    nftId?: string;
    data: Record<string, unknown>;
  }>;
  next: string | null;
}

const activity = command({
  command: "activity <account>",
  description: "An account's history, newest first (activity.list)",
  options: [
    { option: "--limit <n>", description: "1-100 (default 20)" },
    { option: "--type <types>", description: "comma-separated activity types" },
    { option: "--cursor <cursor>", description: "the rows before this one (a page's next)" },
  ],
  async action(broker, args) {
    const actorId = str(args.account);
    const params: Record<string, unknown> = { actorId };
    if (args.options.limit !== undefined) params.limit = Number(args.options.limit);
    if (args.options.cursor !== undefined) params.cursor = str(args.options.cursor);
    if (args.options.type !== undefined) params.types = str(args.options.type).split(",");
    const res = await broker.call<ActivityPageRows, object>("activity.list", params);
    out(`>> ${actorId}: ${res.rows.length} row${res.rows.length === 1 ? "" : "s"}`);
    // What a row is about, in a few words: its amount or price and who is on the other side.
    const about = (d: Record<string, unknown>) =>
      ["amount", "price", "from", "to"]
        .filter(k => d[k] !== undefined)
        .map(k => `${k}=${str(d[k])}`)
        .join(" ");
    if (res.rows.length > 0)
      out(
        ...table([
          ["CURSOR", "AT", "TYPE", "SUBJECT", "DATA"],
          ...res.rows.map(r => [
            r.cursor,
            r.at,
            r.type,
            r.tokenId ?? r.nftId ?? "-",
            about(r.data),
          ]),
        ]).map(l => `   ${l}`),
      );
    if (res.next) out(`>> more: activity ${actorId} --cursor ${res.next}`);
  },
});

interface LiveRow {
  cursor: string;
  type: string;
  at: string;
  tokenId?: string;
  nftId?: string;
  data: Record<string, unknown>;
}

/** One line of a row: when, what, of which token or NFT, and its data. */
const rowLine = (r: LiveRow) =>
  `   ${r.at}  ${r.type.padEnd(20)} ${r.tokenId ?? r.nftId ?? ""}  ${JSON.stringify(r.data)}  (${r.cursor})`;

const tail = command({
  command: "tail <userId>",
  description:
    "A user's activity rows as they happen, like GET /api/me/events: the last few, then every new one (activity.list after the last cursor), for --seconds",
  options: [
    { option: "--seconds <s>", description: "how long to follow (default 30)" },
    { option: "--after <cursor>", description: "start after this row instead of the last 5" },
  ],
  async action(broker, args) {
    const actorId = str(args.userId);
    const list = (params: object) =>
      broker.call<{ rows: LiveRow[] }, object>("activity.list", { actorId, ...params });
    let cursor = args.options.after === undefined ? undefined : str(args.options.after);
    if (cursor === undefined) {
      const last = (await list({ order: "desc", limit: 5 })).rows.reverse();
      last.forEach(r => out(rowLine(r)));
      cursor = last.at(-1)?.cursor;
    }
    const seconds = Number(args.options.seconds ?? 30);
    out(`>> Following ${actorId} for ${seconds} s…`);
    const until = Date.now() + seconds * 1000;
    while (Date.now() < until) {
      const { rows } = await list({ order: "asc", limit: 100, ...(cursor ? { cursor } : {}) });
      rows.forEach(r => out(rowLine(r)));
      cursor = rows.at(-1)?.cursor ?? cursor;
      if (rows.length < 100) await new Promise(r => setTimeout(r, 500));
    }
    out(
      `>> Done (last cursor ${cursor ?? "none"}: \`tail ${actorId} --after ${cursor ?? ""}\` goes on)`,
    );
  },
});

/** Waits for the other nodes to answer discovery, so the first command sees the cluster. */
async function discover(broker: ServiceBroker, maxMs = 3000): Promise<number> {
  const remoteCount = () =>
    broker.registry.getNodeList({ onlyAvailable: true, withServices: false }).length - 1;
  const until = Date.now() + maxMs;
  while (remoteCount() === 0 && Date.now() < until) await new Promise(r => setTimeout(r, 100));
  // INFO packets of the other nodes arrive within a few ms of the first one.
  if (remoteCount() > 0) await new Promise(r => setTimeout(r, 300));
  return remoteCount();
}

/** The project's REPL: its prompt and the commands above, next to moleculer-repl's own. */
export const replOptions: ReplOptions = {
  delimiter: "mintmesh $",
  customCommands: [health, register, login, mktoken, launch, mint, buy, balances, activity, tail],
};

const COMMANDS =
  "health, register, login, mktoken, launch, mint, buy, balances, activity, tail, call, dcall, nodes, services, actions, help, quit";

/** A person reads this console: short lines rather than JSON. */
const consoleLogger: BrokerOptions["logger"] = {
  type: "Console",
  options: { formatter: "short", colors: Boolean(process.stdout.isTTY) },
};

async function main(): Promise<void> {
  const transporter = process.env.TRANSPORTER || DEFAULT_TRANSPORTER;
  const options: BrokerOptions = {
    ...config,
    nodeID: `repl-${os.hostname()}-${process.pid}`,
    transporter: transporter as BrokerOptions["transporter"],
    // Only what needs attention.
    logger: consoleLogger,
    logLevel: (process.env.REPL_LOG_LEVEL || "warn") as BrokerOptions["logLevel"],
    metrics: { enabled: false },
    tracing: { enabled: false },
    // The node's health server would take the HEALTH_PORT of the node it runs beside.
    middlewares: (config.middlewares ?? []).filter(
      mw => typeof mw !== "object" || !("name" in mw) || mw.name !== "Health",
    ),
    replOptions,
  };
  const broker = new ServiceBroker(options);
  await broker.start();
  const others = await discover(broker);
  out(
    `Joined namespace "${broker.namespace}" on ${transporter} as ${broker.nodeID}: ` +
      (others > 0
        ? `${others} other node${others === 1 ? "" : "s"}.`
        : "no other node answered. Is the cluster running with the same TRANSPORTER and NAMESPACE?"),
    `Commands: ${COMMANDS}`,
  );
  broker.repl();
}

/**
 * In `npm run dev`, a change to moleculer.config or a middleware makes moleculer-runner stop
 * the broker and start a new one, which opens a REPL of its own: the old broker's REPL
 * closes with it, or both would read the terminal (and answer every command twice).
 */
function oneReplAtATime(): Middleware {
  let server: REPLServer | undefined;
  return {
    name: "DevRepl",
    created(broker) {
      // Typed as returning nothing, it returns the REPL server we need to close.
      const open = broker.repl.bind(broker) as unknown as () => REPLServer;
      broker.repl = () => {
        server = open();
      };
    },
    async stopped() {
      // Its "exit" would stop the broker and end the process. (Closing twice is harmless.)
      server?.removeAllListeners("exit");
      server?.close();
    },
  };
}

/**
 * `npm run dev` (bin/dev.ts) hands this file to moleculer-runner as its `--config`: the
 * project's broker options (moleculer.config.ts, all from env), with the commands above in
 * the runner's REPL and console log lines instead of JSON.
 */
const devOptions: BrokerOptions = {
  ...config,
  logger: consoleLogger,
  replOptions,
  middlewares: [...(config.middlewares ?? []), oneReplAtATime()],
};
export default devOptions;

// Run as a program (`npm run repl`), not when moleculer-runner loads it as a config.
if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`repl: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
