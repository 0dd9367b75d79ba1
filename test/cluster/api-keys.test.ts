import { beforeAll, describe, expect, it } from "vitest";
import { registerUser, type Registered } from "../helpers/http";
import {
  REDIS_URL,
  clusterDown,
  useCluster,
  type Gateway,
  type NodeProcess,
} from "../helpers/cluster";

/**
 * API keys across processes over NATS: a users node and three gateways. A key deleted
 * through gateway 1 is refused by gateway 2 within a second (the users.apiKeyRevoked
 * broadcast evicts it); gateway 3 drops that broadcast (FAULTS "@users.apiKeyRevoked"),
 * as a node that missed it would, and still refuses the key within a second, because
 * what a gateway was told of a key is kept for less than one.
 */

/** Per key and minute; the polling below sends a key up to about a hundred requests. */
const LIMIT = 500;

interface Key {
  id: string;
  key: string;
}

describe.skipIf(clusterDown())("API keys on several gateways", () => {
  const cluster = useCluster("apikeys", { env: { RATE_LIMIT_MAX: "0" } });
  let users: NodeProcess;
  let gw: Gateway[];
  let ann: Registered;

  beforeAll(async () => {
    users = await cluster.node({
      name: "users",
      services: ["users"],
      env: { DATA_DIR: ":memory:" },
    });
    // Rate-limit counts in Redis, each hit at once (no batching): exact across gateways.
    const env = {
      READY_SERVICES: "users",
      API_KEY_CACHE_TTL_MS: "500",
      API_KEY_RATE_LIMIT: String(LIMIT),
      REDIS_URL,
      RATE_LIMIT_SYNC_MS: "0",
    };
    gw = await Promise.all([
      cluster.gateway({ name: "gateway-1", env }),
      cluster.gateway({ name: "gateway-2", env }),
      cluster.gateway({
        name: "gateway-3",
        env: { ...env, FAULTS: "@users.apiKeyRevoked:abort=503" },
      }),
    ]);
    // Gateways are ready once they see users; users must see them too, to broadcast to them.
    await Promise.all(
      gw.map(g => users.waitFor(new RegExp(`Node '${cluster.nodeId(g.node.name)}' connected`))),
    );
    ann = await registerUser(gw[0].client, "ann");
  });

  const makeKey = async (scopes: string[]) => {
    const res = await gw[0].client.post<Key>(
      "/api/keys",
      { name: "cluster", scopes },
      { token: ann.token },
    );
    expect(res.status, res.text).toBe(201);
    return res.body;
  };
  const status = async (g: Gateway, key: string) =>
    (await g.client.get("/api/users/me", { token: key })).status;

  /**
   * Deletes `key` through gateway 1 right after `g` used it (so `g` holds it), then asks
   * `g` until it refuses: the ms from the delete's answer to the refusal, and whether `g`
   * still let the key in after the delete was answered.
   */
  async function revokeAndWatch(g: Gateway, key: Key) {
    expect(await status(g, key.key)).toBe(200);
    const del = await gw[0].client.delete(`/api/keys/${key.id}`, { token: ann.token });
    expect(del.status).toBe(200);
    const deletedAt = performance.now();
    let stale = false;
    for (;;) {
      const s = await status(g, key.key);
      if (s === 401) return { ms: performance.now() - deletedAt, stale };
      expect(s).toBe(200);
      stale = true;
      if (performance.now() - deletedAt > 5000) throw new Error("still accepted after 5 s");
      await new Promise(r => setTimeout(r, 10));
    }
  }

  it("works on every gateway, as its owner, with its scopes", async () => {
    const key = await makeKey(["read"]);
    for (const g of gw) {
      const me = await g.client.get<{ id: string }>("/api/users/me", { token: key.key });
      expect(me.status).toBe(200);
      expect(me.body.id).toBe(ann.id);
      // Not the profile, whatever its scopes.
      const denied = await g.client.patch<{ error: { type: string } }>(
        "/api/users/me",
        { displayName: "Owned" },
        { token: key.key },
      );
      expect(denied.status).toBe(403);
      expect(denied.body.error.type).toBe("FORBIDDEN");
    }
  });

  it("deleted on gateway 1, is refused by gateway 2 within a second", async () => {
    const { ms } = await revokeAndWatch(gw[1], await makeKey(["read"]));
    expect(ms).toBeLessThan(1000);
  });

  it("is refused within a second by a gateway that never hears the revocation", async () => {
    const { ms, stale } = await revokeAndWatch(gw[2], await makeKey(["read"]));
    // Gateway 3 did hold the key past the delete: the broadcast did not reach it ...
    expect(stale).toBe(true);
    // ... and it still stopped within a second.
    expect(ms).toBeLessThan(1000);
  });

  it("counts a key's requests on all gateways together", async () => {
    const key = await makeKey(["read"]);
    const remaining = async (g: Gateway) => {
      const res = await g.client.get("/api/users/me", { token: key.key });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-ratelimit-limit")).toBe(String(LIMIT));
      return Number(res.headers.get("x-ratelimit-remaining"));
    };
    const seen: number[] = [];
    for (const g of [gw[0], gw[1], gw[2], gw[0], gw[1]]) seen.push(await remaining(g));
    expect(seen).toEqual([1, 2, 3, 4, 5].map(n => LIMIT - n));
  });

  it("leaves no key in any process's output", async () => {
    const key = await makeKey(["read", "transfer"]);
    for (const g of gw) expect(await status(g, key.key)).toBe(200);
    // Errors too: an answer refused for its scope.
    await gw[1].client.post("/api/keys", { name: "x", scopes: ["read"] }, { token: key.key });
    await new Promise(r => setTimeout(r, 200));
    for (const node of [users, ...gw.map(g => g.node)]) {
      const out = node.lines.join("\n");
      expect(out).not.toContain(key.key);
      expect(out).not.toContain(key.key.slice(12));
    }
    expect(gw[1].node.lines.join("\n")).toContain(`"keyId":"${key.id}"`);
  });
});
