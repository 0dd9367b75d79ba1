/**
 * Traffic management between versions of a service, the way an Istio VirtualService splits
 * and routes by header, done by the gateway itself. Pure: parse the config, pick a version.
 *
 * Config (the CANARY env):
 *   CANARY="<service>:<version>=<weight>,<version>=<weight>…;<service>:…"
 *   e.g. CANARY="catalog:v1=90,v2=10"
 * Weights are relative (they need not add up to 100). A version weighted 0 gets no split
 * traffic but still answers requests that ask for it with the `x-version` header: a dark
 * launch. Only services named here may be routed by header.
 *
 * Names: Moleculer prefixes versioned services, so `version: 2` on catalog serves
 * `v2.catalog.list`. "v1" here is the existing unversioned service (`catalog.list`): every
 * caller, alias and event subscription already uses that name, and renaming it to
 * `v1.catalog` would break them all at once.
 */

export const BASE_VERSION = "v1";

export interface VersionWeight {
  version: string;
  weight: number;
}

export type TrafficConfig = Map<string, VersionWeight[]>;

export class TrafficSpecError extends Error {
  constructor(part: string, reason: string) {
    super(`Invalid CANARY entry "${part}": ${reason}`);
    this.name = "TrafficSpecError";
  }
}

const SERVICE_RE = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** "v2", "V2" and "2" all mean v2; anything else is not a version. */
export function normalizeVersion(text: string): string | null {
  const m = /^v?(\d{1,6})$/i.exec(text.trim());
  return m ? `v${Number(m[1])}` : null;
}

export function parseTraffic(spec: string | undefined): TrafficConfig {
  const config: TrafficConfig = new Map();
  if (!spec) return config;
  for (const part of spec
    .split(";")
    .map(s => s.trim())
    .filter(Boolean)) {
    const colon = part.indexOf(":");
    const service = colon < 0 ? "" : part.slice(0, colon).trim();
    if (!SERVICE_RE.test(service)) {
      throw new TrafficSpecError(part, "it must look like catalog:v1=90,v2=10");
    }
    if (config.has(service)) throw new TrafficSpecError(part, `${service} is given twice`);
    const versions: VersionWeight[] = [];
    for (const item of part.slice(colon + 1).split(",")) {
      const [rawVersion, rawWeight, extra] = item.split("=").map(s => s.trim());
      const version = normalizeVersion(rawVersion ?? "");
      const weight = Number(rawWeight);
      if (!version || rawWeight === undefined || extra !== undefined) {
        throw new TrafficSpecError(part, `"${item.trim()}" must look like v2=10`);
      }
      if (rawWeight === "" || !Number.isFinite(weight) || weight < 0) {
        throw new TrafficSpecError(part, `weight of ${version} must be a number ≥ 0`);
      }
      if (versions.some(v => v.version === version)) {
        throw new TrafficSpecError(part, `${version} is given twice`);
      }
      versions.push({ version, weight });
    }
    if (versions.reduce((s, v) => s + v.weight, 0) <= 0) {
      throw new TrafficSpecError(part, "at least one weight must be above 0");
    }
    config.set(service, versions);
  }
  return config;
}

/** The action name Moleculer registers for `action` of `service` at `version`. */
export function versionedActionName(service: string, version: string, action: string): string {
  return version === BASE_VERSION ? `${service}.${action}` : `${version}.${service}.${action}`;
}

/** Weighted pick among the versions that can answer now; null when none can. */
export function pickByWeight(
  versions: readonly VersionWeight[],
  rng: () => number = Math.random,
): string | null {
  const total = versions.reduce((s, v) => s + v.weight, 0);
  if (total <= 0) return null;
  let roll = rng() * total;
  for (const v of versions) {
    if (roll < v.weight) return v.version;
    roll -= v.weight;
  }
  // Float rounding at the very top of the range.
  return [...versions].reverse().find(v => v.weight > 0)?.version ?? null;
}

export type RouteDecision =
  /** Leave the call where the gateway resolved it. */
  | { kind: "keep" }
  /** Call this version; `pinned` when the client asked for it by header. */
  | { kind: "version"; version: string; pinned: boolean }
  /** The header names something that is not a version. */
  | { kind: "bad-header"; value: string }
  /** The header names a version no node serves now. */
  | { kind: "unavailable"; version: string };

/**
 * Chooses the version of `service` for one request.
 *  - an `x-version` header pins the version exactly (no fallback: the client asked for it);
 *  - otherwise the weighted split, among versions `available` says can answer now, so a
 *    canary that is down costs nobody an error (its share goes to the others).
 * Services not in the config are left alone, header or not.
 */
export function chooseVersion(
  config: TrafficConfig,
  service: string,
  header: string | undefined,
  available: (version: string) => boolean,
  rng: () => number = Math.random,
): RouteDecision {
  const versions = config.get(service);
  if (!versions) return { kind: "keep" };
  if (header !== undefined && header.trim() !== "") {
    const version = normalizeVersion(header);
    if (!version) return { kind: "bad-header", value: header };
    return available(version)
      ? { kind: "version", version, pinned: true }
      : { kind: "unavailable", version };
  }
  const up = versions.filter(v => v.weight > 0 && available(v.version));
  const version = pickByWeight(up, rng);
  return version ? { kind: "version", version, pinned: false } : { kind: "keep" };
}
