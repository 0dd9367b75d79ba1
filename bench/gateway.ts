import { ANCHORS, rateRow, runAnchor, type AnchorId } from "./anchors";
import { CONNECTIONS, load } from "./load";
import {
  createToken,
  register,
  startPlatform,
  transfer,
  waitTransfersShown,
  type Platform,
} from "./platform";
import { cleanup, rssMb } from "./procs";
import { report, runMain, versus, type Row } from "./report";

/**
 * The real authenticated GET /api/tokens/:id beside the anchors (bench/anchors.ts), all in
 * one run, so the ratios compare figures taken minutes apart on the same machine:
 *
 *   f  gateway on its own node → catalog over NATS, with Redis (cacher, rate-limit
 *      counters), users and tokens on nodes of their own: JWT, rate limit, validation, cache
 *   g  the same request embedded: every service in one process, as `npm start`
 *
 * Goals (issue 15): f ≥ 100 % of c, ≥ 100 % of e, ≥ 2.5× d; g ≥ 80 % of b. Then the RSS of
 * every node of f (and of g's one process), read after its load: < 120 MB a node.
 */

const BENCH = "gateway";
const RSS_GOAL_MB = 120;

/** Loads GET /api/tokens/:id of `p` with a user's bearer; rows for the case and its RSS. */
async function platformCase(p: Platform, name: string): Promise<Row[]> {
  const creator = await register(p.base, "gateway-creator");
  const other = await register(p.base, "gateway-other");
  const tokenId = await createToken(p.base, creator);
  // One transfer seen by the catalog: the read model (not its fallback) answers.
  await transfer(p.base, tokenId, creator, other.id, "1");
  await waitTransfersShown(p.base, tokenId, 1);
  console.log(`${name}: ${CONNECTIONS} connections…`);
  const result = await load({
    url: `${p.base}/api/tokens/${tokenId}`,
    headers: { Authorization: `Bearer ${creator.token}` },
  });
  const rss: Row[] = p.nodes.map(n => {
    const mb = rssMb(n.child.pid) ?? NaN;
    const many = n.service.includes(",") || n.service === "all";
    return {
      bench: BENCH,
      case: `k RSS ${name.split(" ")[0]}: ${n.service}`,
      value: mb,
      unit: "MB",
      // The goal is per node of a cluster; one process with every service is shown only.
      ...(many ? {} : { goal: `< ${RSS_GOAL_MB} MB`, met: mb < RSS_GOAL_MB }),
    };
  });
  return [rateRow(BENCH, name, result), ...rss];
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const anchors = new Map<AnchorId, Row>();
  const ids = (process.env.BENCH_ANCHORS ?? "a,b,c,d,e").split(",") as AnchorId[];
  for (const id of ids) {
    const row = await runAnchor(id, BENCH);
    anchors.set(id, row);
    rows.push(row);
  }

  const cluster = await startPlatform({
    mode: "nats",
    services: ["users", "tokens", "catalog", "api"],
  });
  const [f, ...fRss] = await platformCase(cluster, "f gateway GET over NATS").finally(() =>
    cluster.stop(),
  );
  const embedded = await startPlatform({ mode: "embedded", services: [] });
  const [g, ...gRss] = await platformCase(embedded, "g gateway GET embedded").finally(() =>
    embedded.stop(),
  );

  const anchor = (id: AnchorId) => {
    const row = anchors.get(id);
    return row && { case: ANCHORS[id], value: row.value };
  };
  rows.push(versus(f, anchor("c"), 1));
  rows.push(versus({ ...f, case: "f vs e" }, anchor("e"), 1));
  rows.push(versus({ ...f, case: "f vs d" }, anchor("d"), 2.5));
  rows.push(versus(g, anchor("b"), 0.8));
  rows.push(...fRss, ...gRss);
  report(BENCH, rows);
}

if (require.main === module) runMain(main, cleanup);
