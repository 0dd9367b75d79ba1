import { afterEach, describe, expect, it, vi } from "vitest";
import type { ServiceBroker } from "moleculer";
import { replOptions } from "../../bin/repl";
import { usePlatform, useUsers } from "../helpers/platform";
import { createToken } from "../helpers/tokens";

/**
 * The REPL's `tail <userId>` on the platform in this process: it prints the user's last
 * rows, then each new one as it is recorded, oldest first, each once.
 */

describe("the REPL's tail", () => {
  const p = usePlatform(["api", "users", "tokens", "activity"], { RATE_LIMIT_MAX: "0" });
  const [ann, bob] = useUsers(p, ["ann", "bob"]);
  afterEach(() => vi.restoreAllMocks());

  it("prints the last rows, then the new ones as they happen", async () => {
    const tail = replOptions.customCommands?.find(c => c.command.startsWith("tail "));
    expect(tail).toBeDefined();
    const printed: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation(chunk => {
      printed.push(String(chunk));
      return true;
    });
    const token = await createToken(p.client, ann.token);
    await expect
      .poll(async () => {
        const page = await p.broker.call<{ rows: unknown[] }, object>("activity.list", {
          actorId: ann.id,
        });
        return page.rows.length;
      })
      .toBe(1);

    const run = (
      tail!.action as unknown as (b: ServiceBroker, args: Record<string, unknown>) => Promise<void>
    )(p.broker, { userId: ann.id, options: { seconds: 3 }, rawCommand: "" });
    await new Promise(r => setTimeout(r, 500));
    for (const amount of ["7", "8"]) {
      const res = await p.client.post(
        `/api/tokens/${token.id}/transfers`,
        { to: bob.id, amount },
        { token: ann.token },
      );
      expect(res.status).toBe(201);
    }
    await run;
    vi.restoreAllMocks();

    const rows = printed
      .join("")
      .split("\n")
      .filter(l => l.startsWith("   "));
    expect(rows.map(l => /(token\.created|transfer\.out)/.exec(l)?.[1])).toEqual([
      "token.created",
      "transfer.out",
      "transfer.out",
    ]);
    expect(rows[1]).toContain('"amount":"7"');
    expect(rows[2]).toContain('"amount":"8"');
    expect(printed.join("")).toMatch(/>> Done \(last cursor \S+/);
  });
});
