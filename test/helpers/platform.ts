import type { AddressInfo } from "node:net";
import type { BrokerOptions, ServiceBroker as Broker, ServiceSchema } from "moleculer";
import { vi } from "vitest";
import { ApiClient } from "./http";

/**
 * The whole platform in this test process: one broker with the chosen services and the
 * real gateway on a free port, NeDB in memory. `env` is applied while the config and
 * service modules are loaded, since they read env at load time, as in production.
 */
export interface Platform {
  broker: Broker;
  client: ApiClient;
  baseUrl: string;
  stop(): Promise<void>;
}

export async function startPlatform(
  services: string[],
  env: Record<string, string> = {},
): Promise<Platform> {
  const saved = { ...process.env };
  Object.assign(process.env, { PORT: "0", HOST: "127.0.0.1" }, env);
  let broker: Broker;
  try {
    vi.resetModules();
    const { ServiceBroker } = await import("moleculer");
    const config = (await import("../../moleculer.config")).default as unknown as BrokerOptions;
    broker = new ServiceBroker({ ...config, transporter: null, nodeID: `test-${process.pid}` });
    for (const name of services) {
      const mod = (await import(`../../services/${name}.service.ts`)) as { default: ServiceSchema };
      broker.createService(mod.default);
    }
    // Services read some env when they start (DbMixin: DATA_DIR), so start before restoring it.
    await broker.start();
  } finally {
    process.env = saved;
  }
  const api = broker.getLocalService("api") as unknown as
    { server?: { address(): AddressInfo } } | undefined;
  const port = api?.server?.address().port ?? 0;
  const baseUrl = `http://127.0.0.1:${port}`;
  return { broker, client: new ApiClient(baseUrl), baseUrl, stop: () => broker.stop() };
}
