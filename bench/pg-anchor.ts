import { createSecretKey, randomBytes } from "node:crypto";
import jwt from "jsonwebtoken";
import type { Pool, PoolClient } from "pg";

/**
 * Anchor l: mintmesh's transfer route on the stack a team would otherwise write, Fastify +
 * PostgreSQL (pg), one transaction per transfer. `POST /api/tokens/:id/transfers` with
 * `{ to, amount }` and a bearer JWT, as docs/api.md: 404 unknown token or `to`, 422
 * INSUFFICIENT_FUNDS, 201 transfer with `Location`. In the transaction: the token and
 * recipient check, the guarded debit (`amount >= $1`), the credit upsert, the transfer row
 * and the outbox row with the event the platform writes (`tokens.transferred`, balances
 * after). Amounts are numeric(78,0); synchronous_commit is on, so every COMMIT waits for
 * its WAL flush (fdatasync), as the platform waits for its own.
 *
 * The bench (bench/transfers.ts, BENCH_MODES=…,postgres) picks the database, the server
 * (`node dist/bench/anchor-server.js pg-transfers`) creates the schema, seeds the accounts
 * and serves. pg is a devDependency: without it, or without a PostgreSQL answering, the
 * bench skips this anchor and says why.
 *
 * env: BENCH_PG_URL (postgres://postgres@127.0.0.1:5432/postgres: where to create the
 * database), BENCH_PG_POOL (20 connections of the server).
 */

export const PG_URL = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const PG_POOL = Number(process.env.BENCH_PG_POOL ?? 20);
/** The database the anchor uses when it may create one; else a schema in `test`. */
const OWN_DATABASE = "mintmesh_bench";
const FALLBACK_DATABASE = "test";
/** The schema of the anchor's tables, dropped and created afresh at each start. */
export const PG_SCHEMA = "mintmesh_bench";
export const PG_TOKEN = "tok_bench";
/** The token's supply, all the creator's at the start; the bench gives each sender FUNDING. */
export const SUPPLY = 10n ** 30n;
export const FUNDING = 10n ** 20n;
/** The application_name of the server's connections (the bench meters their backends' CPU). */
export const PG_APP = "mintmesh-bench-anchor";

/** The ids of the creator and of `n` senders, as the server seeds them. */
export const pgAccounts = (n: number): { creator: string; senders: string[] } => ({
  creator: "usr_bench_creator",
  senders: Array.from({ length: n }, (_, i) => `usr_bench_${i}`),
});

/** An access token as the platform's users service signs it (HS256, `sub`). */
export function pgAccessToken(id: string, secret: string): string {
  return jwt.sign({}, secret, { algorithm: "HS256", subject: id, expiresIn: "1h" });
}

type PgModule = typeof import("pg");

/** pg, or undefined when it is not installed (it is a devDependency). */
export async function loadPg(): Promise<PgModule | undefined> {
  try {
    const mod = (await import("pg")) as PgModule & { default?: PgModule };
    return mod.default ?? mod;
  } catch {
    return undefined;
  }
}

/** `url` with another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * The database the anchor may use: `mintmesh_bench` (created when missing and allowed),
 * else `test`. A string saying why not when pg is missing or no PostgreSQL answers.
 */
export async function pickDatabase(): Promise<{ url: string } | { skip: string }> {
  const pg = await loadPg();
  if (!pg) return { skip: "pg is not installed (it is a devDependency: npm install)" };
  const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
  } catch (err) {
    return { skip: `no PostgreSQL answers at ${PG_URL} (${(err as Error).message})` };
  }
  try {
    const has = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [OWN_DATABASE]);
    if (!has.rowCount) {
      try {
        await admin.query(`CREATE DATABASE ${OWN_DATABASE}`);
      } catch (err) {
        console.log(
          `could not create database ${OWN_DATABASE} (${(err as Error).message}): ` +
            `using schema ${PG_SCHEMA} in database ${FALLBACK_DATABASE}`,
        );
        return { url: withDatabase(PG_URL, FALLBACK_DATABASE) };
      }
    }
    return { url: withDatabase(PG_URL, OWN_DATABASE) };
  } finally {
    await admin.end();
  }
}

/** A pool on the anchor's schema, every commit synchronous. */
export function pgPool(pg: PgModule, url: string, max: number): Pool {
  return new pg.Pool({
    connectionString: url,
    max,
    idleTimeoutMillis: 0,
    application_name: PG_APP,
    options: `-c search_path=${PG_SCHEMA} -c synchronous_commit=on`,
  });
}

/**
 * The anchor's tables, afresh: the token, its creator holding the supply, and `senders`
 * accounts, which the bench funds through the route as it funds the platform's.
 */
async function createSchema(pool: Pool, senders: number): Promise<void> {
  const { creator, senders: ids } = pgAccounts(senders);
  const c = await pool.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${PG_SCHEMA} CASCADE`);
    await c.query(`CREATE SCHEMA ${PG_SCHEMA}`);
    await c.query(`
      CREATE TABLE accounts (id text PRIMARY KEY);
      CREATE TABLE tokens (id text PRIMARY KEY, total_supply numeric(78,0) NOT NULL);
      CREATE TABLE balances (
        token_id text NOT NULL REFERENCES tokens,
        account text NOT NULL REFERENCES accounts,
        amount numeric(78,0) NOT NULL CHECK (amount >= 0),
        PRIMARY KEY (token_id, account)
      );
      CREATE TABLE transfers (
        id text PRIMARY KEY,
        token_id text NOT NULL,
        sender text NOT NULL,
        recipient text NOT NULL,
        amount numeric(78,0) NOT NULL,
        created_at timestamptz NOT NULL
      );
      CREATE TABLE outbox (
        event_id text PRIMARY KEY,
        type text NOT NULL,
        payload jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
    `);
    await c.query("INSERT INTO accounts (id) SELECT unnest($1::text[])", [[creator, ...ids]]);
    await c.query("INSERT INTO tokens (id, total_supply) VALUES ($1, $2)", [
      PG_TOKEN,
      SUPPLY.toString(),
    ]);
    await c.query("INSERT INTO balances (token_id, account, amount) VALUES ($1, $2, $3)", [
      PG_TOKEN,
      creator,
      SUPPLY.toString(),
    ]);
  } finally {
    c.release();
  }
}

interface TransferBody {
  to: string;
  amount: string;
}

class Refused extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** Deadlocks and serialization failures: the transaction is run again. */
const RETRIED = new Set(["40P01", "40001"]);

/** One transfer, one transaction; the transfer as the platform answers it. */
async function transferOnce(
  c: PoolClient,
  tokenId: string,
  from: string,
  body: TransferBody,
): Promise<Record<string, string>> {
  const id = `trf_${randomBytes(12).toString("hex")}`;
  const createdAt = new Date().toISOString();
  const { to, amount } = body;
  await c.query("BEGIN");
  try {
    const found = await c.query<{ token: boolean; recipient: boolean }>(
      "SELECT EXISTS (SELECT 1 FROM tokens WHERE id = $1) AS token, " +
        "EXISTS (SELECT 1 FROM accounts WHERE id = $2) AS recipient",
      [tokenId, to],
    );
    if (!found.rows[0].token) throw new Refused(404, "NOT_FOUND", `Token ${tokenId} not found`);
    if (!found.rows[0].recipient) throw new Refused(404, "NOT_FOUND", `Account ${to} not found`);
    const debit = () =>
      c.query<{ amount: string }>(
        "UPDATE balances SET amount = amount - $3 " +
          "WHERE token_id = $1 AND account = $2 AND amount >= $3 RETURNING amount",
        [tokenId, from, amount],
      );
    const credit = () =>
      c.query<{ amount: string }>(
        "INSERT INTO balances (token_id, account, amount) VALUES ($1, $2, $3) " +
          "ON CONFLICT (token_id, account) DO UPDATE SET amount = balances.amount + EXCLUDED.amount " +
          "RETURNING amount",
        [tokenId, to, amount],
      );
    // The two rows in key order, so two transfers in opposite directions never deadlock.
    let debited, credited;
    if (from <= to) {
      debited = await debit();
      if (!debited.rowCount) throw new Refused(422, "INSUFFICIENT_FUNDS", "Insufficient funds");
      credited = await credit();
    } else {
      credited = await credit();
      debited = await debit();
      if (!debited.rowCount) throw new Refused(422, "INSUFFICIENT_FUNDS", "Insufficient funds");
    }
    await c.query(
      "INSERT INTO transfers (id, token_id, sender, recipient, amount, created_at) " +
        "VALUES ($1, $2, $3, $4, $5, $6)",
      [id, tokenId, from, to, amount, createdAt],
    );
    const eventId = `tokens.transferred:${id}`;
    const event = {
      eventId,
      type: "tokens.transferred",
      occurredAt: new Date().toISOString(),
      data: {
        transferId: id,
        tokenId,
        from,
        to,
        amount,
        createdAt,
        balances: [
          { account: from, amount: debited.rows[0].amount },
          { account: to, amount: credited.rows[0].amount },
        ],
      },
    };
    await c.query("INSERT INTO outbox (event_id, type, payload) VALUES ($1, $2, $3)", [
      eventId,
      event.type,
      event,
    ]);
    await c.query("COMMIT");
  } catch (err) {
    await c.query("ROLLBACK");
    throw err;
  }
  return { id, tokenId, from, to, amount, createdAt };
}

/** The anchor's HTTP server on `port`: schema and seed first, then the route. */
export async function servePgTransfers(port: number): Promise<void> {
  const pg = await loadPg();
  if (!pg) throw new Error("pg is not installed");
  const url = process.env.BENCH_PG_DATABASE_URL ?? withDatabase(PG_URL, OWN_DATABASE);
  const senders = Number(process.env.BENCH_PG_SENDERS ?? 50);
  const secret = createSecretKey(Buffer.from(process.env.JWT_SECRET ?? "bench-secret"));
  const pool = pgPool(pg, url, PG_POOL);
  await createSchema(pool, senders);
  // Every connection open before the load, so the bench can meter their backends.
  const held = await Promise.all(Array.from({ length: PG_POOL }, () => pool.connect()));
  for (const c of held) c.release();

  const { default: Fastify } = await import("fastify");
  const app = Fastify({ logger: false });
  const error = (status: number, type: string, message: string) => ({
    error: { type, message, status },
  });
  app.post<{ Params: { id: string }; Body: TransferBody }>(
    "/api/tokens/:id/transfers",
    {
      schema: {
        body: {
          type: "object",
          required: ["to", "amount"],
          additionalProperties: false,
          properties: {
            to: { type: "string", minLength: 1, maxLength: 64 },
            amount: { type: "string", pattern: "^(0|[1-9][0-9]{0,77})$" },
          },
        },
      },
    },
    async (req, reply) => {
      const auth = req.headers.authorization ?? "";
      let from: string | undefined;
      try {
        const p = jwt.verify(auth.slice("Bearer ".length), secret, { algorithms: ["HS256"] });
        if (typeof p === "object" && typeof p.sub === "string") from = p.sub;
      } catch {
        // from stays undefined
      }
      if (!auth.startsWith("Bearer ") || !from)
        return reply.code(401).send(error(401, "UNAUTHORIZED", "Invalid token"));
      for (let attempt = 1; ; attempt++) {
        const c = await pool.connect();
        try {
          const transfer = await transferOnce(c, req.params.id, from, req.body);
          return reply
            .code(201)
            .header("location", `/api/tokens/${transfer.tokenId}/transfers/${transfer.id}`)
            .send(transfer);
        } catch (err) {
          if (err instanceof Refused)
            return reply.code(err.status).send(error(err.status, err.type, err.message));
          const code = (err as { code?: string }).code;
          if (!(code && RETRIED.has(code) && attempt < 5)) throw err;
        } finally {
          c.release();
        }
      }
    },
  );
  await app.listen({ port, host: "127.0.0.1" });
  console.log("READY");
}
