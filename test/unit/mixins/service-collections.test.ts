import fs from "node:fs";
import path from "node:path";
import type { Service, ServiceSchema } from "moleculer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DbVars } from "../../../mixins/db.mixin";
import { SERVICE_COLLECTIONS } from "../../../mixins/service-collections";
import { testBroker } from "../../helpers/read-models";
import activity from "../../../services/activity.service";
import analytics from "../../../services/analytics.service";
import api from "../../../services/api.service";
import catalog from "../../../services/catalog.service";
import catalogV2 from "../../../services/catalog.v2.service";
import dex from "../../../services/dex.service";
import market from "../../../services/market.service";
import marketing from "../../../services/marketing.service";
import nfts from "../../../services/nfts.service";
import sagas from "../../../services/sagas.service";
import tokens from "../../../services/tokens.service";
import users from "../../../services/users.service";
import webhooks from "../../../services/webhooks.service";

/**
 * SERVICE_COLLECTIONS (what bin/migrate.ts migrates) names every service with stores and
 * exactly the collections it opens: each service started, its stores compared.
 */

const schemas = [
  activity,
  analytics,
  api,
  catalog,
  catalogV2,
  dex,
  market,
  marketing,
  nfts,
  sagas,
  tokens,
  users,
  webhooks,
] as ServiceSchema[];
const files = fs.readdirSync(path.resolve(__dirname, "../../../services"));

describe("SERVICE_COLLECTIONS", () => {
  const broker = testBroker();
  const services = schemas.map(s => broker.createService(s));
  beforeAll(() => broker.start(), 30_000);
  afterAll(() => broker.stop());

  it("starts every service there is", () => {
    expect(files.filter(f => f.endsWith(".service.ts")).length).toBe(schemas.length);
  });

  it("names every service that has stores, with the collections it opens", () => {
    const opened: Record<string, string[]> = {};
    for (const s of services as Array<Service & Partial<DbVars>>)
      if (s.stores && Object.keys(s.stores).length > 0)
        opened[s.name] = Object.keys(s.stores).sort();
    const declared = Object.fromEntries(
      Object.entries(SERVICE_COLLECTIONS).map(([name, c]) => [name, Object.keys(c).sort()]),
    );
    expect(opened).toEqual(declared);
  });
});
