import path from "node:path";

/**
 * How every mintmesh node is started, as `npm run serve` does: moleculer-runner on the
 * compiled config. DEP0174 is moleculer-db's NeDB adapter (DESIGN.md, Toolchain); async
 * context frames make AsyncLocalStorage (request ids in logs) cheap on Node 22; a 32 MB
 * young generation halves scavenges under load (about +10 % transfers/s) and fits the
 * pods' memory limits.
 */
export const NODE_FLAGS = [
  "--disable-warning=DEP0174",
  "--experimental-async-context-frame",
  "--max-semi-space-size=32",
];

export function runnerArgs(root: string, extraNodeFlags: string[] = []): string[] {
  return [
    ...NODE_FLAGS,
    ...extraNodeFlags,
    path.join(root, "node_modules/moleculer/bin/moleculer-runner.js"),
    "--config",
    path.join(root, "dist/moleculer.config.js"),
  ];
}
