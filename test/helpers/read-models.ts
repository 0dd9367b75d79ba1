import { afterAll, beforeAll } from "vitest";
import {
  ServiceBroker,
  type BrokerOptions,
  type Service,
  type ServiceSchema,
  type ServiceSettingSchema,
} from "moleculer";
import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import { defineMixin } from "../../mixins/define";
import {
  CATALOG_COLLECTIONS,
  type BalanceDoc,
  type CatalogStores,
  type TransferDoc,
  type ViewDoc,
} from "../../lib/read-models/catalog-stats";
import { openNedbStore } from "../../lib/store/nedb/nedb-store";

/**
 * A broker of its own for a read model's unit tests, as the Moleculer TypeScript template
 * builds one: no logger, the in-memory ("Fake") channels adapter; `options` add to it.
 */
export function testBroker(options: BrokerOptions = {}): ServiceBroker {
  return new ServiceBroker({
    logger: false,
    // The middleware's typings want every option; "Fake" needs none.
    middlewares: [ChannelsMiddleware({ adapter: "Fake", context: true } as never)],
    ...options,
  });
}

/**
 * `schema` with other settings, as a deployment (or a test) gives them: merged over its
 * own, on a testBroker of its own (with `options`) that runs for the enclosing describe.
 */
export function withSettings<S extends ServiceSettingSchema, M, V>(
  schema: ServiceSchema<S, M, V>,
  settings: Partial<S>,
  options: BrokerOptions = {},
): { broker: ServiceBroker; svc: Service } {
  const broker = testBroker(options);
  const svc = broker.createService({ name: schema.name, mixins: [defineMixin(schema)], settings });
  beforeAll(() => broker.start());
  afterAll(() => broker.stop());
  return { broker, svc };
}

/**
 * How many messages the Fake adapter lets `service` take at once on `channel` in `group`
 * (its consumer is a service of its own with an event bulkhead); undefined when there is
 * no such consumer.
 */
export function inFlightOf(
  broker: ServiceBroker,
  service: string,
  channel: string,
  group: string,
): number | undefined {
  const consumer = broker.getLocalService(`$channel:${service}:${channel}:${group}`);
  if (!consumer) return undefined;
  const events = consumer.schema.events as Record<string, { bulkhead?: { concurrency: number } }>;
  return events[`channels.${channel}`].bulkhead?.concurrency;
}

/** The catalog's collections as real NeDB stores in memory, for its engines' unit tests. */
export async function openCatalogStores(): Promise<CatalogStores> {
  return {
    views: await openNedbStore<ViewDoc>("views", CATALOG_COLLECTIONS.views),
    balances: await openNedbStore<BalanceDoc>("balances", CATALOG_COLLECTIONS.balances),
    transfers: await openNedbStore<TransferDoc>("transfers", CATALOG_COLLECTIONS.transfers),
  };
}
