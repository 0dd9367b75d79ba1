import type { AddressInfo } from "node:net";
import type { BrokerOptions, Middleware, ServiceBroker as Broker, ServiceSchema } from "moleculer";
import { afterAll, beforeAll, vi } from "vitest";
import type { ApiSettings } from "../../services/api.service";
import type { UsersSettings } from "../../services/users.service";
import { ApiClient, registerUser, type Registered } from "./http";

/**
 * The whole platform in this test process: one broker with the chosen services and the
 * real gateway on a free port, SQLite in memory.
 *
 *   startPlatform(["api", "users"], { settings: { api: { readyServices: ["users"] } } })
 *
 * `settings` go over a service's own settings: the way to configure api and users. `env`
 * is for what is read from env when modules load (the broker config, the defaults of
 * services' settings); it is applied while they load, as in production. A plain object
 * of strings in place of the options is taken as `env`. The modules are loaded afresh
 * each time: the config builds its middlewares (channels, bulkhead) at load, and two
 * brokers must not share them.
 */
export interface Platform {
  broker: Broker;
  client: ApiClient;
  baseUrl: string;
  stop(): Promise<void>;
}

/** Settings by service name; an object setting is merged with the service's own. */
export type PlatformSettings = {
  api?: Overrides<ApiSettings>;
  users?: Overrides<UsersSettings>;
};
type Overrides<S> = {
  [K in keyof S]?: S[K] extends unknown[] ? S[K] : S[K] extends object ? Partial<S[K]> : S[K];
};

export interface PlatformOptions {
  settings?: PlatformSettings;
  env?: Record<string, string>;
  /** Middlewares added after the config's (one of the same name is not added twice). */
  middlewares?: Array<Middleware & { name: string }>;
}

export async function startPlatform(
  services: string[],
  options: PlatformOptions | Record<string, string> = {},
): Promise<Platform> {
  const {
    env = {},
    settings = {},
    middlewares = [],
  } = isOptions(options) ? options : { env: options };
  const given: Record<string, object | undefined> = {
    ...settings,
    api: { port: 0, ip: "127.0.0.1", ...settings.api },
  };
  const saved = { ...process.env };
  Object.assign(process.env, env);
  let broker: Broker;
  try {
    vi.resetModules();
    const { ServiceBroker } = await import("moleculer");
    const config: BrokerOptions = (await import("../../moleculer.config")).default;
    const own = (config.middlewares ?? []) as Array<{ name?: string }>;
    const added = middlewares.filter(m => !own.some(o => o.name === m.name));
    broker = new ServiceBroker({
      ...config,
      middlewares: [...(config.middlewares ?? []), ...added],
      transporter: null,
      nodeID: `test-${process.pid}`,
    });
    for (const name of services) {
      const mod = (await import(`../../services/${name}.service.ts`)) as { default: ServiceSchema };
      broker.createService(withSettings(mod.default, given[name]));
    }
    // Services read some env when they start (DbMixin: DATA_DIR), so start before restoring it.
    await broker.start();
  } finally {
    process.env = saved;
  }
  // moleculer-web's HTTP server; its typings don't declare it.
  const api = broker.getLocalService("api") as unknown as
    { server?: { address(): AddressInfo } } | undefined;
  const port = api?.server?.address().port ?? 0;
  const baseUrl = `http://127.0.0.1:${port}`;
  return { broker, client: new ApiClient(baseUrl), baseUrl, stop: () => broker.stop() };
}

function isOptions(o: PlatformOptions | Record<string, string>): o is PlatformOptions {
  return "settings" in o || "env" in o || "middlewares" in o;
}

const isObject = (v: unknown): v is object =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** `schema` with `overrides` over its settings, object settings merged one level deep. */
export function withSettings(schema: ServiceSchema, overrides: object = {}): ServiceSchema {
  const settings: Record<string, unknown> = { ...schema.settings };
  for (const [key, value] of Object.entries(overrides)) {
    const own: unknown = settings[key];
    settings[key] = isObject(value) && isObject(own) ? { ...own, ...value } : value;
  }
  return { ...schema, settings };
}

/**
 * startPlatform for a whole describe: started in beforeAll, stopped in afterAll, hooks
 * registered where this is called. The fields are read through when used, so the value
 * can be kept in a const and used in tests, hooks and functions that take a Platform.
 */
export function usePlatform(
  services: string[],
  options: PlatformOptions | Record<string, string> = {},
): Platform {
  let started: Platform | undefined;
  beforeAll(async () => {
    started = await startPlatform(services, options);
  });
  afterAll(() => started?.stop());
  const get = (): Platform => {
    if (!started) throw new Error("platform not started yet: use it in a test or a hook");
    return started;
  };
  return {
    get broker() {
      return get().broker;
    },
    get client() {
      return get().client;
    },
    get baseUrl() {
      return get().baseUrl;
    },
    stop: () => get().stop(),
  };
}

/**
 * Users registered (all at once) in a beforeAll on `p`, one per name, in order:
 *   const [ann, bob] = useUsers(p, ["ann", "bob"]);
 * Each is read through when used, like usePlatform's value.
 */
export function useUsers(p: Platform, names: string[]): Registered[] {
  let users: Registered[] | undefined;
  beforeAll(async () => {
    users = await Promise.all(names.map(n => registerUser(p.client, n)));
  });
  const get = (i: number): Registered => {
    if (!users) throw new Error("users not registered yet: use them in a test or a hook");
    return users[i];
  };
  return names.map((_, i) => ({
    get id() {
      return get(i).id;
    },
    get email() {
      return get(i).email;
    },
    get token() {
      return get(i).token;
    },
  }));
}

/** Every service of the platform, the gateway first: what a test of the whole API starts. */
export const ALL_SERVICES = [
  "api",
  "users",
  "tokens",
  "catalog",
  "analytics",
  "sagas",
  "dex",
  "marketing",
  "nfts",
  "market",
  "activity",
  "webhooks",
];
