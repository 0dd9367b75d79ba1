import type { AnalyticsSummary } from "../../lib/read-models/read-model";

/**
 * The whole analytics summary, zero everywhere but `given`: for `toEqual`, so a test
 * names only the counters it moved and still checks that nothing else did.
 */
export function analyticsSummary(given: Partial<AnalyticsSummary> = {}): AnalyticsSummary {
  return {
    tokens: 0,
    transfers: 0,
    nftsMinted: 0,
    sales: 0,
    launches: { completed: 0, compensated: 0, failed: 0 },
    volumeByToken: {},
    salesVolumeByToken: {},
    ...given,
  };
}
