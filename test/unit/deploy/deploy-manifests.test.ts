import fs from "node:fs";
import path from "node:path";
import { METRIC, ServiceBroker } from "moleculer";
import { YAML11_SCHEMA, load, loadAll } from "js-yaml";
import { afterEach, describe, expect, it } from "vitest";
import { METRICS } from "../../../lib/observability/domain-metrics";
import { HealthMiddleware } from "../../../middlewares/health.middleware";
import { GATEWAY_NODE_FLAGS, SERVICE_START_ORDER } from "../../../bin/runner-args";
import { freePort } from "../../helpers/cluster";

/**
 * The deployment files checked by parsing, since no cluster or Docker engine runs in CI:
 * what `kubectl apply` and `docker compose up --scale` would trip over, and the health
 * endpoint that their probes call.
 */

const ROOT = path.resolve(__dirname, "../../..");

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

interface Manifest {
  file: string;
  doc: Obj;
  kind: string;
  name: string;
  namespace: string;
}

function yamlFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap(e =>
      e.isDirectory()
        ? yamlFiles(path.join(dir, e.name))
        : /\.ya?ml$/.test(e.name)
          ? [path.join(dir, e.name)]
          : [],
    );
}

const manifestFiles = yamlFiles(path.join(ROOT, "k8s"));
const manifests: Manifest[] = manifestFiles.flatMap(file =>
  loadAll(fs.readFileSync(file, "utf8"))
    .filter(d => d !== null && d !== undefined)
    .map(d => {
      const doc = obj(d);
      const meta = obj(doc.metadata);
      return {
        file: path.relative(ROOT, file),
        doc,
        kind: String(doc.kind ?? ""),
        name: String(meta.name ?? ""),
        namespace: String(meta.namespace ?? "default"),
      };
    }),
);
const ofKind = (...kinds: string[]) => manifests.filter(m => kinds.includes(m.kind));
const workloads = ofKind("Deployment", "StatefulSet");
const podSpec = (m: Manifest) => obj(obj(obj(m.doc.spec).template).spec);
const podLabels = (m: Manifest) => obj(obj(obj(obj(m.doc.spec).template).metadata).labels);
const containers = (m: Manifest) => arr(podSpec(m).containers).map(obj);
const envValue = (c: Obj, name: string) =>
  arr(c.env)
    .map(obj)
    .find(e => e.name === name)?.value;

/** Does every key/value of `selector` appear in `labels`? */
const selects = (selector: Obj, labels: Obj) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

describe("k8s manifests", () => {
  it("are there, and every document has apiVersion, kind and metadata.name", () => {
    expect(manifestFiles.length).toBeGreaterThan(0);
    for (const m of manifests) {
      const where = `${m.file} (${m.kind || "?"} ${m.name || "?"})`;
      expect(typeof m.doc.apiVersion === "string" && m.doc.apiVersion, where).toBeTruthy();
      expect(m.kind, where).not.toBe("");
      expect(m.name, where).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    }
    const keys = manifests.map(m => `${m.namespace}/${m.kind}/${m.name}`);
    expect(keys.length).toBe(new Set(keys).size);
  });

  it("have a ConfigMap, a Secret example with JWT_SECRET, and the stateful infrastructure", () => {
    expect(ofKind("ConfigMap").length).toBeGreaterThan(0);
    const secrets = ofKind("Secret");
    expect(secrets.some(s => "JWT_SECRET" in obj(s.doc.stringData ?? s.doc.data))).toBe(true);
    expect(ofKind("StatefulSet").map(s => s.name)).toEqual(
      expect.arrayContaining(["nats", "redis", "mongo"]),
    );
  });

  it("run the gateway and each service as a Deployment of its own", () => {
    const hosted = ofKind("Deployment").map(d => envValue(containers(d)[0], "SERVICES"));
    expect(hosted).toEqual(expect.arrayContaining(SERVICE_START_ORDER));
    expect(hosted.length).toBe(new Set(hosted).size);
  });

  it("give every workload container readiness and liveness probes on a declared port, and resource requests", () => {
    expect(workloads.length).toBeGreaterThan(0);
    for (const w of workloads) {
      const spec = obj(w.doc.spec);
      expect(selects(obj(obj(spec.selector).matchLabels), podLabels(w)), `${w.name} selector`).toBe(
        true,
      );
      for (const c of containers(w)) {
        const where = `${w.file} ${w.name}/${String(c.name)}`;
        const ports = arr(c.ports).map(obj);
        for (const probe of ["readinessProbe", "livenessProbe"]) {
          const p = obj(c[probe]);
          expect(Object.keys(p).length, `${where} ${probe}`).toBeGreaterThan(0);
          const port = obj(p.httpGet ?? p.tcpSocket).port;
          if (port !== undefined) {
            const declared = ports.some(x => x.name === port || x.containerPort === port);
            expect(declared, `${where} ${probe} port ${String(port)}`).toBe(true);
          }
        }
        const requests = obj(obj(c.resources).requests);
        expect(requests.cpu, `${where} cpu request`).toBeDefined();
        expect(requests.memory, `${where} memory request`).toBeDefined();
      }
    }
  });

  it("let Prometheus scrape every node on its METRICS_PORT, and probe /health/live and /health/ready", () => {
    const config = obj(ofKind("ConfigMap").find(c => c.name === "mintmesh-config")?.doc.data);
    const metricsPort = Number(config.METRICS_PORT);
    expect(metricsPort).toBeGreaterThan(0);
    for (const d of ofKind("Deployment")) {
      const annotations = obj(obj(obj(obj(d.doc.spec).template).metadata).annotations);
      expect(annotations["prometheus.io/scrape"], d.name).toBe("true");
      expect(annotations["prometheus.io/path"], d.name).toBe("/metrics");
      expect(Number(annotations["prometheus.io/port"]), d.name).toBe(metricsPort);
      const c = containers(d)[0];
      const ports = arr(c.ports).map(obj);
      expect(
        ports.some(p => p.containerPort === metricsPort),
        `${d.name} metrics port`,
      ).toBe(true);
      expect(obj(obj(c.readinessProbe).httpGet).path, d.name).toBe("/health/ready");
      expect(obj(obj(c.livenessProbe).httpGet).path, d.name).toBe("/health/live");
    }
  });

  it("take their env from a ConfigMap and Secret that exist", () => {
    const names = (kind: string) => new Set(ofKind(kind).map(m => m.name));
    for (const d of ofKind("Deployment")) {
      for (const c of containers(d)) {
        for (const from of arr(c.envFrom).map(obj)) {
          const cm = obj(from.configMapRef).name;
          const secret = obj(from.secretRef).name;
          if (cm)
            expect(names("ConfigMap").has(String(cm)), `${d.name} ConfigMap ${String(cm)}`).toBe(
              true,
            );
          if (secret)
            expect(names("Secret").has(String(secret)), `${d.name} Secret ${String(secret)}`).toBe(
              true,
            );
        }
      }
    }
  });

  it("run NATS, Redis and MongoDB with passwords from the Secret, and nodes connect with them", () => {
    const secret = obj(ofKind("Secret").find(s => s.name === "mintmesh-secrets")?.doc.stringData);
    const fromSecret = (c: Obj, name: string) =>
      obj(
        obj(
          arr(c.env)
            .map(obj)
            .find(e => e.name === name)?.valueFrom,
        ).secretKeyRef,
      );
    const server = (name: string) =>
      containers(ofKind("StatefulSet").find(s => s.name === name)!)[0];
    const nats = server("nats");
    expect(arr(nats.args)).toEqual(
      expect.arrayContaining(["--user", "--pass", "$(NATS_PASSWORD)"]),
    );
    expect(fromSecret(nats, "NATS_PASSWORD")).toEqual({
      name: "mintmesh-secrets",
      key: "NATS_PASSWORD",
    });
    const redis = server("redis");
    expect(arr(redis.args)).toEqual(expect.arrayContaining(["--requirepass", "$(REDIS_PASSWORD)"]));
    expect(fromSecret(redis, "REDIS_PASSWORD").key).toBe("REDIS_PASSWORD");
    const mongo = server("mongo");
    expect(fromSecret(mongo, "MONGO_INITDB_ROOT_PASSWORD").key).toBe("MONGO_PASSWORD");
    // The URLs the nodes use carry credentials and live in the Secret, not the ConfigMap.
    const config = obj(ofKind("ConfigMap").find(c => c.name === "mintmesh-config")?.doc.data);
    for (const key of ["TRANSPORTER", "CHANNELS_URL", "REDIS_URL", "MONGO_URI"]) {
      expect(config[key], `ConfigMap ${key}`).toBeUndefined();
      expect(String(secret[key]), `Secret ${key}`).toMatch(/^[a-z]+:\/\/[^/@]*:[^/@]+@/);
    }
  });

  it("let only mintmesh's nodes reach NATS, Redis and MongoDB", () => {
    const policies = ofKind("NetworkPolicy");
    for (const [name, port] of [
      ["nats", 4222],
      ["redis", 6379],
      ["mongo", 27017],
    ] as const) {
      const policy = policies.find(p =>
        selects(obj(obj(obj(p.doc.spec).podSelector).matchLabels), {
          "app.kubernetes.io/name": name,
        }),
      );
      expect(policy, `NetworkPolicy for ${name}`).toBeDefined();
      const spec = obj(policy!.doc.spec);
      expect(arr(spec.policyTypes)).toContain("Ingress");
      const rules = arr(spec.ingress).map(obj);
      expect(rules.length).toBe(1);
      const from = arr(rules[0].from).map(f => obj(obj(f).podSelector).matchLabels);
      expect(from).toEqual([{ "app.kubernetes.io/name": "mintmesh" }]);
      expect(arr(rules[0].ports).map(p => obj(p).port)).toEqual([port]);
      // The nodes' pods carry that label; the servers' own pods do not.
      for (const d of ofKind("Deployment"))
        expect(podLabels(d)["app.kubernetes.io/name"], d.name).toBe("mintmesh");
    }
  });

  it("run a MongoDB server the adapter's driver supports (its wire-version table ends at 5.0)", () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const driver = require("mongodb/lib/core/wireprotocol/constants") as {
      MAX_SUPPORTED_SERVER_VERSION: string;
    };
    const image = String(containers(ofKind("StatefulSet").find(s => s.name === "mongo")!)[0].image);
    const version = image.split(":")[1];
    expect(Number(version)).toBeLessThanOrEqual(Number(driver.MAX_SUPPORTED_SERVER_VERSION));
  });

  it("autoscale the gateway and the stateless services, each HPA aiming at an existing Deployment", () => {
    const hpas = ofKind("HorizontalPodAutoscaler");
    const targets = hpas.map(h => {
      const spec = obj(h.doc.spec);
      const ref = obj(spec.scaleTargetRef);
      const target = ofKind(String(ref.kind)).find(
        d => d.name === ref.name && d.namespace === h.namespace,
      );
      expect(target, `${h.name} targets ${String(ref.kind)} ${String(ref.name)}`).toBeDefined();
      expect(Number(spec.minReplicas)).toBeLessThanOrEqual(Number(spec.maxReplicas));
      // A CPU-utilization target means nothing without CPU requests.
      for (const c of containers(target!))
        expect(obj(obj(c.resources).requests).cpu, `${h.name} cpu request`).toBeDefined();
      return envValue(containers(target!)[0], "SERVICES");
    });
    expect(targets).toEqual(expect.arrayContaining(["api", "catalog", "analytics"]));
  });

  it("have each Service select the pods of a workload, on ports those pods declare", () => {
    for (const s of ofKind("Service")) {
      const spec = obj(s.doc.spec);
      const selector = obj(spec.selector);
      const backing = workloads.filter(
        w => w.namespace === s.namespace && selects(selector, podLabels(w)),
      );
      expect(backing.length, `Service ${s.name} selects no pods`).toBeGreaterThan(0);
      for (const port of arr(spec.ports).map(obj)) {
        const target = port.targetPort ?? port.port;
        const declared = backing.every(w =>
          containers(w).some(c =>
            arr(c.ports)
              .map(obj)
              .some(p => p.name === target || p.containerPort === target),
          ),
        );
        expect(declared, `Service ${s.name} port ${String(target)}`).toBe(true);
      }
    }
  });
});

describe("docker-compose.yml", () => {
  // YAML 1.1 so that the `<<: *node` merge keys are applied as compose applies them.
  const compose = obj(
    load(fs.readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8"), { schema: YAML11_SCHEMA }),
  );
  const services = obj(compose.services);
  const env = (name: string) => obj(obj(services[name]).environment);
  const nodes = Object.keys(services).filter(n => env(n).SERVICES !== undefined);

  it("has the infrastructure, the gateway and each service as its own container", () => {
    expect(Object.keys(services)).toEqual(
      expect.arrayContaining(["nats", "mongo", "redis", "jaeger", "gateway"]),
    );
    const hosted = nodes.filter(n => n !== "repl").map(n => env(n).SERVICES);
    expect(hosted).toEqual(expect.arrayContaining(SERVICE_START_ORDER));
    expect(hosted.length).toBe(new Set(hosted).size);
  });

  it("runs NATS with JetStream", () => {
    const nats = obj(services.nats);
    const command = Array.isArray(nats.command) ? nats.command : String(nats.command).split(/\s+/);
    expect(command).toContain("-js");
  });

  it("runs NATS, Redis and MongoDB with passwords, and a MongoDB the driver supports", () => {
    const command = (name: string) => arr(obj(services[name]).command).map(String);
    expect(command("nats")).toEqual(expect.arrayContaining(["--user", "mintmesh", "--pass"]));
    expect(command("nats")[command("nats").indexOf("--pass") + 1]).toMatch(/^\$\{NATS_PASSWORD:\?/);
    expect(command("redis")[command("redis").indexOf("--requirepass") + 1]).toMatch(
      /^\$\{REDIS_PASSWORD:\?/,
    );
    expect(env("mongo").MONGO_INITDB_ROOT_PASSWORD).toMatch(/^\$\{MONGO_PASSWORD:\?/);
    for (const name of ["nats", "redis", "mongo"])
      expect(obj(services[name]).ports, name).toBeUndefined();
    expect(String(obj(services.mongo).image)).toBe("mongo:5.0");
  });

  it("runs the gateway with the image's command and its heap bounds, in compose and in k8s", () => {
    const image = fs.readFileSync(path.join(ROOT, "Dockerfile"), "utf8");
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(image)?.[1] ?? "[]") as string[];
    const withBounds = [
      ...cmd.slice(0, -3).filter(a => !a.startsWith("--max-semi-space-size")),
      ...GATEWAY_NODE_FLAGS,
      ...cmd.slice(-3),
    ];
    expect(cmd.length).toBeGreaterThan(3);
    expect(arr(obj(services.gateway).command).map(String)).toEqual(withBounds);
    const gateway = manifests.find(m => m.kind === "Deployment" && m.name === "mintmesh-gateway");
    const container = obj(arr(obj(obj(obj(gateway?.doc.spec).template).spec).containers)[0]);
    expect(arr(container.command).map(String)).toEqual(withBounds);
  });

  it("lets every node be scaled: no container_name, no host port but the gateway's", () => {
    for (const name of nodes) {
      expect(obj(services[name]).container_name, name).toBeUndefined();
      if (name !== "gateway") expect(obj(services[name]).ports, name).toBeUndefined();
    }
    expect(obj(services.tokens).restart).toBe("unless-stopped");
  });

  it("gives every node the cluster's env and a healthcheck", () => {
    const required = [
      "SERVICES",
      "TRANSPORTER",
      "MONGO_URI",
      "REDIS_URL",
      "CHANNELS_URL",
      "JAEGER_ENDPOINT",
      "JWT_SECRET",
      "NAMESPACE",
    ];
    for (const name of nodes) {
      expect(Object.keys(env(name)), name).toEqual(expect.arrayContaining(required));
      // Credentials from the environment (never a default), as the servers require them.
      expect(env(name).TRANSPORTER, name).toMatch(
        /^nats:\/\/mintmesh:\$\{NATS_PASSWORD:\?[^}]*\}@nats:4222$/,
      );
      expect(env(name).REDIS_URL, name).toMatch(
        /^redis:\/\/:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379$/,
      );
      expect(env(name).MONGO_URI, name).toMatch(
        /^mongodb:\/\/mintmesh:\$\{MONGO_PASSWORD:\?[^}]*\}@mongo:/,
      );
      if (name !== "repl") expect(obj(obj(services[name]).healthcheck).test, name).toBeDefined();
    }
    expect(env("gateway").SERVICES).toBe("api");
    // Same services in both deployments.
    const k8s = ofKind("Deployment").map(d => envValue(containers(d)[0], "SERVICES"));
    expect(
      nodes
        .filter(n => n !== "repl")
        .map(n => env(n).SERVICES)
        .sort(),
    ).toEqual(k8s.sort());
  });
});

describe("Prometheus and Grafana of docker-compose.yml", () => {
  const compose = obj(
    load(fs.readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8"), { schema: YAML11_SCHEMA }),
  );
  const services = obj(compose.services);
  const env = (name: string) => obj(obj(services[name]).environment);
  const nodes = Object.keys(services).filter(n => env(n).SERVICES !== undefined && n !== "repl");
  /** Host paths of a compose service's bind mounts ("./x:/y:ro"), relative to the repository. */
  const binds = (name: string) =>
    arr(obj(services[name]).volumes)
      .map(String)
      .filter(v => v.startsWith("./"))
      .map(v => v.split(":"));

  it("gives every node METRICS_PORT and HEALTH_PORT, and a healthcheck on /health/ready", () => {
    expect(nodes.length).toBeGreaterThanOrEqual(SERVICE_START_ORDER.length);
    for (const name of nodes) {
      expect(Number(env(name).METRICS_PORT), name).toBeGreaterThan(0);
      expect(Number(env(name).HEALTH_PORT), name).toBeGreaterThan(0);
      expect(arr(obj(obj(services[name]).healthcheck).test).join(" "), name).toContain(
        "/health/ready",
      );
    }
  });

  it("has Prometheus scrape every node on its METRICS_PORT, from a config in the repository", () => {
    const [source, target] = binds("prometheus").find(([, t]) => t.endsWith("prometheus.yml"))!;
    expect(arr(obj(services.prometheus).command).join(" ")).toContain(`--config.file=${target}`);
    const config = obj(load(fs.readFileSync(path.join(ROOT, source), "utf8")));
    const scraped = new Map<string, number>();
    for (const job of arr(config.scrape_configs).map(obj)) {
      expect(job.metrics_path ?? "/metrics").toBe("/metrics");
      for (const sd of arr(job.dns_sd_configs).map(obj))
        for (const n of arr(sd.names)) scraped.set(String(n), Number(sd.port));
      for (const sc of arr(job.static_configs).map(obj))
        for (const t of arr(sc.targets)) {
          const [host, port] = String(t).split(":");
          scraped.set(host, Number(port));
        }
    }
    for (const name of nodes) expect(scraped.get(name), name).toBe(Number(env(name).METRICS_PORT));
  });

  it("has Grafana provisioned from files in the repository: a data source and the dashboard", () => {
    const mounts = binds("grafana");
    expect(mounts.length).toBeGreaterThan(0);
    for (const [source] of mounts)
      expect(fs.existsSync(path.join(ROOT, source)), `${source} exists`).toBe(true);
    const provisioning = mounts.find(([, t]) => t === "/etc/grafana/provisioning")![0];
    const datasources = yamlFiles(path.join(ROOT, provisioning, "datasources")).flatMap(f =>
      arr(obj(load(fs.readFileSync(f, "utf8"))).datasources).map(obj),
    );
    const prometheus = datasources.find(d => d.type === "prometheus");
    expect(String(prometheus?.url)).toMatch(/^http:\/\/prometheus:9090/);
    const providers = yamlFiles(path.join(ROOT, provisioning, "dashboards")).flatMap(f =>
      arr(obj(load(fs.readFileSync(f, "utf8"))).providers).map(obj),
    );
    // Each provider reads a directory that a bind mount fills from the repository.
    for (const p of providers) {
      const dir = String(obj(p.options).path);
      expect(
        mounts.some(
          ([source, t]) => t === dir && fs.readdirSync(path.join(ROOT, source)).length > 0,
        ),
        dir,
      ).toBe(true);
    }
    expect(providers.length).toBeGreaterThan(0);
    expect(String(prometheus?.uid)).toBe("prometheus");
  });

  it("has one dashboard whose queries name only metrics that exist, on the provisioned data source", () => {
    const dir = path.join(ROOT, "deploy/grafana/dashboards");
    const files = fs.readdirSync(dir).filter(f => f.endsWith(".json"));
    expect(files).toEqual(["mintmesh.json"]);
    const dashboard = obj(JSON.parse(fs.readFileSync(path.join(dir, files[0]), "utf8")));
    const panels = arr(dashboard.panels).map(obj);
    // Moleculer's and the contract's names as Prometheus shows them.
    const known = new Set(
      [...Object.values(METRIC), ...Object.values(METRICS)]
        .map(String)
        .filter(n => n.includes("."))
        .map(n => n.replace(/[.-]/g, "_")),
    );
    const exprs = panels.flatMap(p => arr(p.targets).map(t => String(obj(t).expr)));
    expect(exprs.length).toBeGreaterThan(0);
    const used = new Set<string>();
    for (const expr of exprs)
      for (const [m] of expr.matchAll(/\b(?:mintmesh|moleculer|process|os)_[a-z0-9_]+/g))
        used.add(m);
    for (const name of used) {
      const base = name.replace(/_(bucket|count|sum)$/, "");
      expect(known.has(name) || known.has(base), `${name} is a metric`).toBe(true);
    }
    // What the issue asks the dashboard to show.
    const all = exprs.join("\n");
    for (const m of [
      "moleculer_request_total",
      "moleculer_request_error_total",
      "moleculer_request_time_bucket",
      "mintmesh_transfers_total",
      "mintmesh_readmodel_lag",
      "mintmesh_breaker_open",
    ])
      expect(all, m).toContain(m);
    for (const p of panels) expect(obj(p.datasource).uid, String(p.title)).toBe("prometheus");
  });
});

describe("health endpoint of every node (HEALTH_PORT), as the probes see it", () => {
  let broker: ServiceBroker | undefined;
  afterEach(async () => {
    if (broker?.started) await broker.stop();
    broker = undefined;
  });

  const get = async (port: number, p: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${p}`);
    return { status: res.status, body: (await res.json()) as Obj };
  };

  it("is live from creation, ready once started and connected, unready when the transporter drops", async () => {
    const port = await freePort();
    broker = new ServiceBroker({
      nodeID: "health-test",
      logger: false,
      transporter: "Fake",
      middlewares: [HealthMiddleware({ port, host: "127.0.0.1" })],
    });
    // Created, not started: the process lives, but must get no traffic yet.
    await expect.poll(() => get(port, "/health/live").then(r => r.status)).toBe(200);
    expect(await get(port, "/health/ready")).toEqual({
      status: 503,
      body: { status: "unavailable", nodeID: "health-test", reason: "starting", missing: [] },
    });

    await broker.start();
    expect(await get(port, "/health/ready")).toEqual({
      status: 200,
      body: { status: "ok", nodeID: "health-test" },
    });

    await broker.transit!.disconnect();
    expect((await get(port, "/health/ready")).body).toMatchObject({
      reason: "transporter disconnected",
      missing: ["nats"],
    });
    expect((await get(port, "/health/live")).status).toBe(200);
    expect((await get(port, "/nope")).status).toBe(404);

    await broker.stop();
    await expect(fetch(`http://127.0.0.1:${port}/health/live`)).rejects.toThrow();
  });

  it("fails the start when its port is taken, instead of leaving probes to fail", async () => {
    const port = await freePort();
    const first = new ServiceBroker({
      nodeID: "first",
      logger: false,
      middlewares: [HealthMiddleware({ port, host: "127.0.0.1" })],
    });
    await first.start();
    try {
      broker = new ServiceBroker({
        nodeID: "second",
        logger: false,
        middlewares: [HealthMiddleware({ port, host: "127.0.0.1" })],
      });
      await expect(broker.start()).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.stop();
    }
  });

  it("is off without HEALTH_PORT", () => {
    const saved = process.env.HEALTH_PORT;
    delete process.env.HEALTH_PORT;
    try {
      expect(Object.keys(HealthMiddleware())).toEqual(["name"]);
    } finally {
      if (saved !== undefined) process.env.HEALTH_PORT = saved;
    }
  });
});
