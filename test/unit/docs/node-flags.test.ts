import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { GATEWAY_NODE_FLAGS, NODE_FLAGS } from "../../../bin/runner-args";

/**
 * The node flags are written once, in package.json `config.node_flags` (and
 * `gateway_node_flags`): the npm scripts expand `$npm_package_config_node_flags`,
 * bin/runner-args.ts and vitest.config.mts read them. The Dockerfile's CMD cannot read
 * them, so it is checked against them here (compose and k8s against the Dockerfile in
 * deploy-manifests.test.ts).
 */

const ROOT = path.resolve(__dirname, "../../..");
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  config: Record<string, string>;
  scripts: Record<string, string>;
};

describe("node flags", () => {
  it("come from package.json's config", () => {
    expect(NODE_FLAGS).toEqual(pkg.config.node_flags.split(" "));
    expect(NODE_FLAGS).toEqual(
      expect.arrayContaining(["--disable-warning=DEP0174", "--experimental-async-context-frame"]),
    );
    expect(GATEWAY_NODE_FLAGS).toEqual(pkg.config.gateway_node_flags.split(" "));
  });

  it("are what the tests run with (vitest.config.mts)", () => {
    expect(process.execArgv).toEqual(expect.arrayContaining(NODE_FLAGS));
  });

  it("are written nowhere else in the npm scripts", () => {
    for (const [name, script] of Object.entries(pkg.scripts)) {
      for (const flag of NODE_FLAGS) expect(script, name).not.toContain(flag);
      if (/\bnode (?!dist\/bin\/(dev|cluster)\.js)/.test(script))
        expect(script, name).toContain("node $npm_package_config_node_flags ");
    }
  });

  it("are the Dockerfile CMD's", () => {
    const image = fs.readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(image)?.[1] ?? "[]") as string[];
    const script = cmd.findIndex((a, i) => i > 0 && !a.startsWith("--"));
    expect(cmd.slice(1, script)).toEqual(NODE_FLAGS);
  });
});
