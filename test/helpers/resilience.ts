import type { Context, ServiceBroker } from "moleculer";
import type { Cluster } from "./cluster";

/**
 * Helpers for the resilience cluster tests: nodes with run-time fault control, a probe
 * broker joined to the test's namespace to see which node answers, and bounded request loops.
 */

/**
 * Settings every resilience node shares, `useCluster(prefix, { env: RESILIENCE_ENV })`:
 * fault control on, no per-IP limit on the load.
 */
export const RESILIENCE_ENV: Record<string, string> = {
  FAULTS_CONTROL: "true",
  RATE_LIMIT_MAX: "0",
};

/** A broker in the test process, joined to the cluster: calls nodes, sees the registry. */
export function joinProbe(cluster: Cluster): Promise<ServiceBroker> {
  return cluster.broker({
    // Raw answers: which node was chosen, without retries hiding it.
    retryPolicy: { enabled: false },
    heartbeatInterval: 1,
    heartbeatTimeout: 3,
  });
}

/** Calls `action` and tells which node the balancer sent it to. */
export async function callAndSee<T>(
  broker: ServiceBroker,
  action: string,
  params: Record<string, unknown> = {},
  opts: Record<string, unknown> = {},
): Promise<{ result: T; nodeID: string }> {
  const p = broker.call<T, Record<string, unknown>>(action, params, opts);
  const result = await p;
  const ctx = (p as unknown as { ctx?: Context }).ctx;
  return { result, nodeID: ctx?.nodeID ?? "?" };
}

export interface Sample<T> {
  startedAt: number;
  ms: number;
  value?: T;
  error?: unknown;
}

/**
 * Runs `fn` from `workers` loops until `untilMs` from now has passed (or `stop()` says so),
 * each loop sleeping `gapMs` between calls. Errors are recorded, never thrown.
 */
export async function runLoad<T>(
  fn: (i: number) => Promise<T>,
  opts: { workers: number; durationMs: number; gapMs?: number; stop?: () => boolean },
): Promise<Array<Sample<T>>> {
  const samples: Array<Sample<T>> = [];
  const until = Date.now() + opts.durationMs;
  let seq = 0;
  const worker = async () => {
    while (Date.now() < until && !opts.stop?.()) {
      const startedAt = Date.now();
      const i = seq++;
      try {
        const value = await fn(i);
        samples.push({ startedAt, ms: Date.now() - startedAt, value });
      } catch (error) {
        samples.push({ startedAt, ms: Date.now() - startedAt, error });
      }
      if (opts.gapMs) await sleep(opts.gapMs);
    }
  };
  await Promise.all(Array.from({ length: opts.workers }, worker));
  return samples.sort((a, b) => a.startedAt - b.startedAt);
}

export const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

/**
 * Until `broker` has discovered the `$faults` control of `nodeID`: a probe that joined
 * together with the nodes may not have their INFO yet.
 */
async function faultControlOf(broker: ServiceBroker, nodeID: string): Promise<void> {
  const known = () =>
    broker.registry
      .getServiceList({ onlyAvailable: true })
      .some(svc => svc.name === "$faults" && svc.nodeID === nodeID);
  for (const until = Date.now() + 15_000; !known(); await sleep(50))
    if (Date.now() > until) throw new Error(`no $faults control discovered on ${nodeID}`);
}

/** Sets the faults of one node (it must run with FAULTS_CONTROL=true). */
export async function setFaults(broker: ServiceBroker, nodeID: string, spec: string) {
  await faultControlOf(broker, nodeID);
  await broker.call("$faults.set", { spec }, { nodeID });
}

/** How many calls the fault injection has failed or delayed on one node, per action. */
export async function faultHits(
  broker: ServiceBroker,
  nodeID: string,
): Promise<Record<string, number>> {
  const res = await broker.call<{ hits: Record<string, number> }, Record<string, never>>(
    "$faults.get",
    {},
    { nodeID },
  );
  return res.hits;
}
