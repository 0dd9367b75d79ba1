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
  CatalogViews,
  catalogStores,
  type CatalogViewsSettings,
} from "../../lib/read-models/catalog-stats";
import { CatalogPromotions } from "../../lib/read-models/catalog-promotions";
import { APPLIED_COLLECTION, applyBatch } from "../../lib/read-models/applied-events";
import type { Received } from "../../lib/read-models/read-model";
import { TOKEN_EVENTS, type DomainEvent, type TokenTransferred } from "../../lib/events/domain";
import { SqliteDatabase } from "../../lib/store/sqlite/sqlite-database";
import type { CollectionSpec, Database } from "../../lib/store/store";

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

/** A read model's collections and its applied eventIds, in a SQLite database in memory. */
export function readModelDatabase(collections: Record<string, CollectionSpec>): Database {
  return SqliteDatabase.open({ ...collections, ...APPLIED_COLLECTION });
}

/** Events as the channels hand them over: each on the channel of its type. */
export const received = (...events: DomainEvent[]): Received[] =>
  events.map(event => ({ channel: event.type, event }));

/**
 * The catalog's engines over a database in memory, fed as the service feeds them
 * (mixins/read-model.mixin.ts): each delivery is one batch, one transaction.
 */
export function catalogInMemory(settings: CatalogViewsSettings) {
  const db = readModelDatabase(CATALOG_COLLECTIONS);
  const views = new CatalogViews(catalogStores(db), settings);
  const deliver = (...events: DomainEvent[]) =>
    applyBatch(db, received(...events), async (tx, fresh) => {
      const on = new CatalogViews(catalogStores(tx), settings);
      const promotions = new CatalogPromotions(catalogStores(tx).views, on, settings);
      const transfers = fresh.filter(r => r.channel === TOKEN_EVENTS.transferred);
      for (const { event } of fresh) {
        if (event.type === TOKEN_EVENTS.created) await on.created(event as DomainEvent<never>);
        if (event.type === TOKEN_EVENTS.updated) await on.updated(event as DomainEvent<never>);
        if (event.type === TOKEN_EVENTS.deleted) await on.deleted(event as DomainEvent<never>);
        if (event.type.startsWith("marketing."))
          await promotions.changed(event as DomainEvent<never>);
      }
      if (transfers.length > 0)
        await on.transferred(transfers.map(r => r.event as DomainEvent<TokenTransferred>));
    });
  return { db, views, stores: catalogStores(db), deliver };
}
