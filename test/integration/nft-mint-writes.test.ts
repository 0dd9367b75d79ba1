import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, describe, expect, it } from "vitest";
import { usePlatform, useUsers } from "../helpers/platform";
import type { ErrorBody } from "../helpers/http";
import type { Collection, Nft, NftMetadata } from "../../lib/events/nfts";
import { NFT_METADATA_MAX_BYTES } from "../../lib/shared/params";

/**
 * What a mint stores, in the nfts service's real SQLite file: its NFT carries the metadata
 * (and its event does until the outbox has sent it), the rest is a few hundred bytes,
 * whether one mints at a time or fifty at once. The collection's document stays small: it
 * used to carry every pending mint's metadata and be rewritten whole on each mint (93 MB
 * written for 1.8 MB of metadata, fifty at once).
 */

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mintmesh-mints-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const SERVICES = ["api", "users", "nfts"];
const ENV = { DATA_DIR: dir, STORE_SYNC: "false", RATE_LIMIT_MAX: "0", READY_SERVICES: "nfts" };

/** Metadata of about 15 KB, under the 16 KB bound. */
function bigMetadata(n: number): NftMetadata {
  return {
    name: `Big ${n}`,
    description: "d".repeat(1000),
    image: "https://example.com/big.png",
    attributes: Array.from({ length: 40 }, (_, i) => ({
      trait_type: `trait ${i} `.padEnd(64, "t"),
      value: "v".repeat(256),
    })),
  };
}

/** Bytes the nfts service's database holds, by collection (its last commit, read-only). */
function sizes(): Record<string, number> {
  const db = new DatabaseSync(path.join(dir, "nfts", "nfts.sqlite"), { readOnly: true });
  try {
    const out: Record<string, number> = {};
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all();
    for (const { name } of tables as Array<{ name: string }>) {
      const row = db
        .prepare(`SELECT coalesce(sum(length(_id) + length(doc)), 0) AS n FROM "${name}"`)
        .get() as { n: number };
      out[name] = row.n;
    }
    return out;
  } finally {
    db.close();
  }
}

/** Once the outbox has sent and removed what the mints wrote, the files stop growing. */
async function settledSizes(): Promise<Record<string, number>> {
  let last = JSON.stringify(sizes());
  for (;;) {
    await new Promise(resolve => setTimeout(resolve, 150));
    const now = JSON.stringify(sizes());
    if (now === last) return JSON.parse(now) as Record<string, number>;
    last = now;
  }
}

const grown = (before: Record<string, number>, after: Record<string, number>, skip = "") =>
  Object.keys(after)
    .filter(f => f !== skip)
    .reduce((sum, f) => sum + after[f] - (before[f] ?? 0), 0);

describe("bytes a mint writes", () => {
  const p = usePlatform(SERVICES, ENV);
  const [ann] = useUsers(p, ["ann"]);

  const mint = (collectionId: string, metadata: NftMetadata) =>
    p.client.post<Nft>(`/api/collections/${collectionId}/nfts`, { metadata }, { token: ann.token });

  async function measure(total: number, atOnce: number) {
    const c = await p.client.post<Collection>(
      "/api/collections",
      { name: "Heavy", symbol: "HVY" },
      { token: ann.token },
    );
    expect(c.status).toBe(201);
    const payload = Buffer.byteLength(JSON.stringify(bigMetadata(0)));
    expect(payload).toBeGreaterThan(14_000);
    expect(payload).toBeLessThanOrEqual(NFT_METADATA_MAX_BYTES);
    const before = await settledSizes();
    const serials: number[] = [];
    for (let i = 0; i < total; i += atOnce) {
      const batch = await Promise.all(
        Array.from({ length: atOnce }, (_, j) => mint(c.body.id, bigMetadata(i + j))),
      );
      for (const r of batch) {
        expect(r.status, r.text).toBe(201);
        serials.push(r.body.serial);
      }
    }
    expect(serials.sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const after = await settledSizes();
    return {
      payload,
      all: grown(before, after) / total,
      records: grown(before, after, "outbox") / total,
      collection: ((after.collections ?? 0) - (before.collections ?? 0)) / total,
    };
  }

  for (const atOnce of [1, 50]) {
    it(`${atOnce} at a time: about twice the metadata per mint (the NFT and its event), no more`, async () => {
      const m = await measure(50, atOnce);
      console.log(`mints ${atOnce} at a time: ${JSON.stringify(m)}`);
      // The NFT and its event each carry the metadata once; the counter is small.
      expect(m.all).toBeLessThanOrEqual(2 * m.payload + 2048);
      expect(m.records).toBeLessThanOrEqual(m.payload + 1024);
      expect(m.collection).toBeLessThan(1024);
    });
  }

  it("refuses metadata over 16 KB as JSON with 400 naming metadata", async () => {
    const c = await p.client.post<Collection>(
      "/api/collections",
      { name: "Too big", symbol: "BIG" },
      { token: ann.token },
    );
    const metadata = bigMetadata(1);
    metadata.attributes = [...metadata.attributes!, ...metadata.attributes!.slice(0, 8)];
    expect(Buffer.byteLength(JSON.stringify(metadata))).toBeGreaterThan(NFT_METADATA_MAX_BYTES);
    const res = await mint(c.body.id, metadata);
    expect(res.status).toBe(400);
    const body = res.body as unknown as ErrorBody;
    expect(body.error.data?.map(e => e.field)).toEqual(["metadata"]);
    const tooMany = {
      name: "x",
      attributes: Array.from({ length: 51 }, () => ({ trait_type: "a", value: 1 })),
    };
    const many = await mint(c.body.id, tooMany);
    expect(many.status).toBe(400);
    expect((many.body as unknown as ErrorBody).error.data?.map(e => e.field)).toEqual([
      "metadata.attributes",
    ]);
  });
});
