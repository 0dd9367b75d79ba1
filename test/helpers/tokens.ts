import { randomBytes } from "node:crypto";
import type { ApiClient } from "./http";
import type { Token } from "../../lib/events/domain";
import type { TransferRecord } from "../../lib/tokens/ledger";

/** Token helpers for tests that drive the gateway over HTTP. */

/** What the API answers: the shapes of lib/events/domain.ts and lib/tokens/ledger.ts. */
export type TokenBody = Token;
export type TransferBody = TransferRecord;

/** A symbol no other test has taken: /^[A-Z0-9]{2,11}$/. */
export function uniqueSymbol(prefix = "T"): string {
  return (prefix + randomBytes(5).toString("hex")).toUpperCase().slice(0, 11);
}

export async function createToken(
  client: ApiClient,
  token: string,
  overrides: Record<string, unknown> = {},
): Promise<TokenBody> {
  const res = await client.post<TokenBody>(
    "/api/tokens",
    {
      name: "Test token",
      symbol: uniqueSymbol(),
      decimals: 18,
      initialSupply: "1000000",
      ...overrides,
    },
    { token },
  );
  if (res.status !== 201) throw new Error(`create token failed: ${res.status} ${res.text}`);
  return res.body;
}

export async function balanceOf(
  client: ApiClient,
  tokenId: string,
  account: string,
): Promise<string> {
  const res = await client.get<{ amount: string }>(`/api/tokens/${tokenId}/balances/${account}`);
  if (res.status !== 200) throw new Error(`balance failed: ${res.status} ${res.text}`);
  return res.body.amount;
}

/** Every holder of a token (all pages), largest first. */
export async function allHolders(
  client: ApiClient,
  tokenId: string,
): Promise<Array<{ account: string; amount: string }>> {
  const rows: Array<{ account: string; amount: string }> = [];
  for (let offset = 0; ; offset += 100) {
    const res = await client.get<{ rows: typeof rows; total: number }>(
      `/api/tokens/${tokenId}/holders?limit=100&offset=${offset}`,
    );
    if (res.status !== 200) throw new Error(`holders failed: ${res.status} ${res.text}`);
    rows.push(...res.body.rows);
    if (rows.length >= res.body.total || res.body.rows.length === 0) return rows;
  }
}

export const sumAmounts = (rows: Array<{ amount: string }>): bigint =>
  rows.reduce((s, r) => s + BigInt(r.amount), 0n);

export interface Clients {
  /** True once `stop()` was called: a client's retries end there too. */
  readonly stopped: boolean;
  /** Tells the clients to stop; resolves once each has finished the request it was on. */
  stop(): Promise<void>;
}

/**
 * `count` clients sending one request after another, `next(client, n)` for each (`n`
 * counts the requests of all clients), until `stop()`.
 */
export function startClients(
  count: number,
  next: (client: number, n: number) => Promise<void>,
): Clients {
  let stopped = false;
  let seq = 0;
  const loop = async (c: number) => {
    while (!stopped) await next(c, seq++);
  };
  const loops = Array.from({ length: count }, (_, c) => loop(c));
  return {
    get stopped() {
      return stopped;
    },
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** Client `c`'s `n`th transfer among `accounts` accounts: from one to another, never itself. */
export function transferPair(c: number, n: number, accounts: number): { from: number; to: number } {
  const from = (c + n) % accounts;
  return { from, to: (from + 1 + (n % (accounts - 1))) % accounts };
}
