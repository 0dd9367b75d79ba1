import { Writable } from "node:stream";
import type { BrokerOptions, ServiceBroker } from "moleculer";
import { vi } from "vitest";

/**
 * A broker with the project's own config (moleculer.config.ts, imported afresh), no
 * transporter, its pino log lines at `level` handed to `write` instead of stdout: what a
 * test of the log lines reads. `options` (given the config) add to or override it.
 */
export async function brokerWithLogs(opts: {
  nodeID: string;
  level: "debug" | "info";
  write: (chunk: string) => void;
  options?: (config: BrokerOptions) => Partial<BrokerOptions>;
}): Promise<ServiceBroker> {
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      opts.write(chunk.toString());
      done();
    },
  });
  vi.resetModules();
  const { ServiceBroker: Broker } = await import("moleculer");
  const config: BrokerOptions = (await import("../../moleculer.config")).default;
  const pino = config.logger as { type: string; options: { pino: object } };
  return new Broker({
    ...config,
    transporter: null,
    nodeID: opts.nodeID,
    logLevel: opts.level,
    logger: {
      ...pino,
      options: {
        ...pino.options,
        level: opts.level,
        pino: { ...pino.options.pino, destination },
      },
    },
    ...opts.options?.(config),
  });
}
