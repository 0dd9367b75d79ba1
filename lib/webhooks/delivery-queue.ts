import { KeyedBatcher } from "../shared/batcher";
import type { Database, Query, Store, Update } from "../store/store";
import { pruneOlderThan } from "../store/store";
import { DELIVERIES, ENDPOINTS, type DeliveryDoc, type EndpointDoc } from "./documents";
import { nextDelayMs, parseRetryAfter, type RetrySchedule } from "./schedule";
import type { AttemptResult, Sender } from "./sender";
import { signedHeaders } from "./signer";

/**
 * The durable delivery queue (docs/api.md "Webhooks", docs/durability.md): deliveries are
 * documents in the webhooks service's store, so nothing queued is lost with a node.
 *
 *  - Due work: a pending delivery's `dueAt` (sparse index) is when its next attempt is
 *    due. A node claims one with a conditional update on that `dueAt` that moves it to
 *    the end of a lease: of several replicas reading it at once one wins, and if the
 *    winner dies mid-attempt the delivery is due again when the lease ends. An attempt's
 *    result is written only while the lease is still the node's (on its owner and the
 *    attempt's number), so a node that lost it changes nothing. The claims of one look
 *    at the due work commit together, and so do results that come together.
 *  - Bounded concurrency: at most `concurrency` attempts at once on a node, at most
 *    `perEndpoint` to one endpoint; due work of a saturated endpoint is not even read,
 *    so a slow or dead endpoint holds its own slots and never the others'.
 *  - Retries: every failure (no 2xx within the timeout) is tried again after the
 *    schedule's next wait (lib/webhooks/schedule.ts; Retry-After honoured), and after
 *    the last one the delivery is `failed`.
 *  - Disabling: an endpoint none of whose attempts has succeeded for `disableAfterMs`
 *    (a day: the whole retry window) is disabled once a delivery to it ends `failed`;
 *    its `disabledReason` says so, and its pending deliveries then fail without being sent.
 *  - Retention: delivered and failed deliveries are removed `retentionMs` after they ended.
 */

export interface QueueOptions {
  /** This node and engine (a lease's owner). */
  owner: string;
  leaseMs: number;
  pollMs: number;
  concurrency: number;
  perEndpoint: number;
  schedule: RetrySchedule;
  disableAfterMs: number;
  retentionMs: number;
}

export interface QueueLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface WebhookStats {
  pending: number;
  /** Age of the oldest pending delivery (ms), 0 when none. */
  oldestPendingMs: number;
  failed: number;
  disabledEndpoints: number;
  /** A few disabled endpoints and why (for the operator page). */
  disabled: Array<{ id: string; ownerId: string; reason: string | null }>;
}

interface ResultWrite {
  query: Query;
  update: Update;
  done: DeliveryDoc | null;
}

export class DeliveryQueue {
  private readonly deliveries: Store<DeliveryDoc>;
  private readonly endpoints: Store<EndpointDoc>;
  /** deliveryId → endpointId of the attempts running on this node. */
  private readonly inFlight = new Map<string, string>();
  private readonly perEndpoint = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private again = false;
  private stopped = true;
  private readonly idle = new Set<() => void>();
  /** Attempts' results, written many to a transaction (one commit) as they come. */
  private readonly results: KeyedBatcher<ResultWrite>;

  constructor(
    private readonly db: Database,
    private readonly sender: Sender,
    private readonly log: QueueLogger,
    private readonly opts: QueueOptions,
  ) {
    this.deliveries = db.store<DeliveryDoc>(DELIVERIES);
    this.endpoints = db.store<EndpointDoc>(ENDPOINTS);
    this.results = new KeyedBatcher((_key, writes) =>
      db.transaction(async tx => {
        const store = tx.store<DeliveryDoc>(DELIVERIES);
        for (const w of writes) w.done = await store.updateOne(w.query, w.update);
      }),
    );
  }

  /** A conditional write of an attempt's result (see `results`); the new document or null. */
  private async writeResult(query: Query, update: Update): Promise<DeliveryDoc | null> {
    const w: ResultWrite = { query, update, done: null };
    await this.results.submit("results", w);
    return w.done;
  }

  /**
   * Starts polling. `ownsAll`: no other node can be sending from this store (an embedded
   * file under its directory lock), so the leases a killed process left are released now.
   */
  async start(ownsAll: boolean): Promise<void> {
    if (ownsAll) {
      const now = Date.now();
      await this.deliveries.update(
        { state: "pending", leaseOwner: { $exists: true } },
        { $set: { dueAt: now }, $unset: { leaseOwner: true, leaseUntil: true } },
      );
    }
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops claiming; waits (up to `waitMs`) for the attempts under way to be recorded. */
  async stop(waitMs = 5000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.inFlight.size === 0) return;
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, waitMs);
      this.idle.add(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Look for due work now (new deliveries were queued). */
  kick(): void {
    if (!this.stopped) this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.polling) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.poll(), ms);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    this.polling = true;
    this.again = false;
    let full = false;
    try {
      full = await this.claimDue();
    } catch (err) {
      this.log.warn({ err }, "Webhook queue: reading due deliveries failed");
    } finally {
      this.polling = false;
    }
    if (this.stopped) return;
    // More due work than free slots: look again as soon as one frees (see `finished`).
    this.schedule(this.again && !full ? 0 : this.opts.pollMs);
  }

  /** Claims and starts due deliveries while slots are free; true when the slots are all taken. */
  private async claimDue(): Promise<boolean> {
    const free = this.opts.concurrency - this.inFlight.size;
    if (free <= 0) return true;
    const saturated = [...this.perEndpoint]
      .filter(([, n]) => n >= this.opts.perEndpoint)
      .map(([id]) => id);
    const now = Date.now();
    const due = await this.deliveries.find(
      {
        dueAt: { $lte: now },
        ...(saturated.length > 0 ? { endpointId: { $nin: saturated } } : {}),
      },
      { sort: { dueAt: 1 }, limit: free * 2 },
    );
    // What fits in the free slots, each endpoint within its bound, claimed in one
    // transaction (one commit for all of them).
    const planned = new Map<string, number>();
    const picks: DeliveryDoc[] = [];
    for (const d of due) {
      if (picks.length >= free) break;
      const n = (this.perEndpoint.get(d.endpointId) ?? 0) + (planned.get(d.endpointId) ?? 0);
      if (n >= this.opts.perEndpoint || this.inFlight.has(d._id)) continue;
      planned.set(d.endpointId, (planned.get(d.endpointId) ?? 0) + 1);
      picks.push(d);
    }
    // A full window of one endpoint's work hid others' behind it: look again at once.
    if (due.length === free * 2 && picks.length < free) this.again = true;
    if (picks.length === 0 || this.stopped) return this.inFlight.size >= this.opts.concurrency;
    const until = Date.now() + this.opts.leaseMs;
    const claimed = await this.db.transaction(async tx => {
      const store = tx.store<DeliveryDoc>(DELIVERIES);
      const won: DeliveryDoc[] = [];
      for (const d of picks) {
        const c = await store.updateOne(
          { _id: d._id, state: "pending", dueAt: d.dueAt },
          { $set: { dueAt: until, leaseUntil: until, leaseOwner: this.opts.owner } },
        );
        if (c) won.push(c); // else another node took it
      }
      return won;
    });
    for (const d of claimed) this.begin(d);
    return this.inFlight.size >= this.opts.concurrency;
  }

  private begin(d: DeliveryDoc): void {
    this.inFlight.set(d._id, d.endpointId);
    this.perEndpoint.set(d.endpointId, (this.perEndpoint.get(d.endpointId) ?? 0) + 1);
    void this.attempt(d)
      .catch(err => this.log.warn({ err, deliveryId: d._id }, "Webhook attempt not recorded"))
      .finally(() => this.finished(d));
  }

  private finished(d: DeliveryDoc): void {
    this.inFlight.delete(d._id);
    const n = (this.perEndpoint.get(d.endpointId) ?? 1) - 1;
    if (n <= 0) this.perEndpoint.delete(d.endpointId);
    else this.perEndpoint.set(d.endpointId, n);
    if (this.inFlight.size === 0) for (const f of [...this.idle]) f();
    this.kick();
  }

  /** One attempt of a claimed delivery, and its result. */
  private async attempt(d: DeliveryDoc): Promise<void> {
    const endpoint = await this.endpoints.findOne({ _id: d.endpointId });
    if (!endpoint) {
      // Deleted with its deliveries; this one was claimed just before.
      await this.deliveries.remove({ _id: d._id, leaseOwner: this.opts.owner });
      return;
    }
    if (!endpoint.enabled) {
      await this.end(d, "failed", { lastError: "endpoint disabled" });
      return;
    }
    const headers = signedHeaders(endpoint.secret, d.eventId, d.body);
    const result = await this.sender.send(endpoint.url, headers, d.body);
    await this.record(d, endpoint, result);
  }

  /** Writes an attempt's result, if the lease is still ours (else it changes nothing). */
  private async record(d: DeliveryDoc, ep: EndpointDoc, r: AttemptResult): Promise<void> {
    const attempts = d.attempts + 1;
    const now = Date.now();
    const seen = { attempts, lastStatus: r.status ?? null, lastError: r.error ?? null };
    if (r.ok) {
      if (await this.end(d, "delivered", seen)) {
        if (ep.failingSince !== null)
          await this.endpoints.updateOne({ _id: ep._id }, { $set: { failingSince: null } });
      }
      return;
    }
    const failingSince = ep.failingSince ?? now;
    if (ep.failingSince === null)
      await this.endpoints.updateOne(
        { _id: ep._id, failingSince: null },
        { $set: { failingSince: now } },
      );
    const retryAfter = parseRetryAfter(r.retryAfter, now);
    const wait = nextDelayMs(this.opts.schedule, attempts, retryAfter);
    if (wait === null) {
      if (!(await this.end(d, "failed", seen))) return;
      this.log.info(
        { deliveryId: d._id, endpointId: ep._id, attempts, lastError: seen.lastError },
        "Webhook delivery failed for good",
      );
      if (now - failingSince >= this.opts.disableAfterMs) await this.disable(ep, seen.lastError);
      return;
    }
    const at = now + wait;
    await this.writeResult(
      { _id: d._id, leaseOwner: this.opts.owner, attempts: d.attempts },
      {
        $set: { ...seen, nextAttemptAt: at, dueAt: at },
        $unset: { leaseOwner: true, leaseUntil: true },
      },
    );
  }

  /** Ends a delivery as delivered or failed, if its lease is still ours. */
  private async end(
    d: DeliveryDoc,
    state: "delivered" | "failed",
    seen: Partial<Pick<DeliveryDoc, "attempts" | "lastStatus" | "lastError">>,
  ): Promise<boolean> {
    const now = Date.now();
    const done = await this.writeResult(
      { _id: d._id, leaseOwner: this.opts.owner, attempts: d.attempts },
      {
        $set: {
          ...seen,
          state,
          nextAttemptAt: null,
          finishedAt: now,
          ...(state === "delivered" ? { deliveredAt: new Date(now).toISOString() } : {}),
        },
        $unset: { dueAt: true, leaseOwner: true, leaseUntil: true },
      },
    );
    return done !== null;
  }

  private async disable(ep: EndpointDoc, lastError: string | null): Promise<void> {
    const hours = Math.round(this.opts.disableAfterMs / 3600_000);
    const span = hours >= 1 ? `${hours} h` : `${Math.round(this.opts.disableAfterMs / 1000)} s`;
    const reason = `No delivery succeeded for ${span}; the last attempt: ${lastError ?? "failed"}`;
    const changed = await this.endpoints.updateOne(
      { _id: ep._id, enabled: true },
      { $set: { enabled: false, disabledReason: reason } },
    );
    if (changed)
      this.log.warn({ endpointId: ep._id, ownerId: ep.ownerId }, "Webhook endpoint disabled");
  }

  /**
   * Makes a delivery due now with a fresh round of attempts (POST …/redeliver). One an
   * attempt is under way for is left to it. False when there is no such delivery.
   */
  async redeliver(deliveryId: string, endpointId: string): Promise<boolean> {
    const d = await this.deliveries.findOne({ _id: deliveryId, endpointId });
    if (!d) return false;
    const now = Date.now();
    await this.deliveries.updateOne(
      { _id: deliveryId, leaseOwner: { $exists: false } },
      {
        $set: { state: "pending", attempts: 0, nextAttemptAt: now, dueAt: now, deliveredAt: null },
        $unset: { finishedAt: true },
      },
    );
    this.kick();
    return true;
  }

  /** Removes delivered and failed deliveries past the retention; how many went. */
  prune(nowMs = Date.now()): Promise<number> {
    return pruneOlderThan(this.deliveries, "finishedAt", nowMs - this.opts.retentionMs);
  }

  async stats(nowMs = Date.now()): Promise<WebhookStats> {
    const [pending, oldest, failed, disabledEndpoints, disabled] = await Promise.all([
      this.deliveries.count({ state: "pending" }),
      this.deliveries.find({ state: "pending" }, { sort: { _id: 1 }, limit: 1 }),
      this.deliveries.count({ state: "failed" }),
      this.endpoints.count({ enabled: false }),
      this.endpoints.find({ enabled: false }, { limit: 5 }),
    ]);
    const since = oldest[0] ? Date.parse(oldest[0].createdAt) : nowMs;
    return {
      pending,
      oldestPendingMs: Math.max(0, nowMs - since),
      failed,
      disabledEndpoints,
      disabled: disabled.map(e => ({ id: e._id, ownerId: e.ownerId, reason: e.disabledReason })),
    };
  }
}
