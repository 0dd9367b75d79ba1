import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerUser, type Registered } from "../helpers/http";
import { startPlatform, type Platform } from "../helpers/platform";
import { waitUntil } from "../helpers/cluster";
import { uniqueSymbol } from "../helpers/tokens";

/**
 * Bounded memory (docs/architecture.md rule 10), with the default settings: what clients
 * can make the platform keep (cached pages, their fallback copies, Idempotency-Key
 * answers) has a bound, however many distinct requests they send.
 *
 * The bound stated: 10,000 requests below grow the heap by less than 64 MB. The defaults
 * keep at most 32 M characters of cached JSON (CACHE_MAX_BYTES), 8 M of fallback copies
 * (READ_FALLBACK_MAX_BYTES) and nothing for anonymous keys; without those bounds the same
 * requests kept every page twice and grew the heap by hundreds of MB.
 */
const HEAP_BOUND_MB = 64;
const PAGES = 5_000;
const BAD_POSTS = 5_000;
const TOKENS = 110;

// The heap is measured after full collections: gc() without starting Node with --expose-gc.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const heapUsedMb = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 1024 / 1024;
};

/** Runs `fn` over `items`, `width` at a time. */
async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

/** Every spelling of the prefixes of "token": 2 + 4 + 8 + 16 + 32 distinct queries, one result. */
function caseVariants(word: string): string[] {
  const out: string[] = [];
  for (let len = 1; len <= word.length; len++) {
    for (let mask = 0; mask < 1 << len; mask++) {
      out.push(
        [...word.slice(0, len)].map((c, i) => (mask & (1 << i) ? c.toUpperCase() : c)).join(""),
      );
    }
  }
  return out;
}

describe("memory stays bounded whatever clients ask", () => {
  let p: Platform;
  let ann: Registered;

  beforeAll(async () => {
    p = await startPlatform(["api", "users", "tokens", "catalog"], {
      settings: {
        api: { readyServices: ["users", "tokens", "catalog"], rateLimits: { max: 0 } },
      },
    });
    ann = await registerUser(p.client, "pages");
    // About 2 KB each, so that a page of 100 is about 200 KB.
    await inParallel(
      Array.from({ length: TOKENS }, (_, i) => i),
      4,
      async i => {
        const res = await p.client.post(
          "/api/tokens",
          {
            name: `Token ${i}`,
            symbol: uniqueSymbol("M"),
            decimals: 0,
            initialSupply: "1",
            metadata: {
              description: `${"d".repeat(990)} ${i}`,
              imageUrl: `https://img.example/${"p".repeat(980)}/${i}.png`,
            },
          },
          { token: ann.token },
        );
        if (res.status !== 201) throw new Error(`create: ${res.status} ${res.text}`);
      },
    );
    await waitUntil(async () => {
      const res = await p.client.get<{ total: number }>("/api/tokens?limit=1");
      return res.body.total === TOKENS;
    });
  }, 120_000);
  afterAll(() => p.stop());

  it(`grows the heap by less than ${HEAP_BOUND_MB} MB over ${PAGES} distinct pages of ~200 KB and ${BAD_POSTS} anonymous bad POSTs with distinct keys`, async () => {
    const queries: string[] = [];
    for (const q of caseVariants("token")) {
      for (let offset = 0; offset < 10; offset++) {
        for (let limit = 91; limit <= 100; limit++) {
          queries.push(`/api/tokens?q=${q}&limit=${limit}&offset=${offset}`);
        }
      }
    }
    expect(queries.length).toBeGreaterThanOrEqual(PAGES + 500);
    const sample = await p.client.get(queries[queries.length - 1]);
    expect(sample.text.length).toBeGreaterThan(180_000);
    expect(sample.text.length).toBeLessThan(250_000);

    let bad = 0;
    const badPost = async (i: number) => {
      const res = await p.client.post(
        "/api/auth/register",
        { email: `not-an-email-${i}` },
        { headers: { "idempotency-key": `k-${i}-${"x".repeat(200)}` } },
      );
      if (res.status === 400) bad++;
    };
    const page = async (path: string) => {
      const res = await p.client.get(path);
      if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
    };

    // A short warm-up of requests of their own (code paths compiled, pools opened): what is
    // measured then includes filling every cache up to its bound.
    await inParallel(queries.slice(PAGES, PAGES + 20), 4, page);
    await inParallel(
      Array.from({ length: 20 }, (_, i) => -1 - i),
      4,
      badPost,
    );
    const before = heapUsedMb();

    await inParallel(queries.slice(0, PAGES), 4, page);
    await inParallel(
      Array.from({ length: BAD_POSTS }, (_, i) => i),
      8,
      badPost,
    );
    const grown = heapUsedMb() - before;

    expect(bad).toBe(BAD_POSTS + 20);
    expect(grown, `heap grew ${grown.toFixed(1)} MB`).toBeLessThan(HEAP_BOUND_MB);
  }, 300_000);
});
