import { Errors } from "moleculer";
import { beforeEach, describe, expect, it } from "vitest";
import { ClientError } from "../../../lib/shared/errors";
import type { DomainEvent, SagaEnded } from "../../../lib/events/domain";
import { SagaEngine, type SagaEngineOptions } from "../../../lib/sagas/saga-engine";
import type { SagaCall, SagaCallOptions, SagaDefinition } from "../../../lib/sagas/saga-definition";
import { SAGA_COLLECTIONS, type SagaDoc } from "../../../lib/sagas/saga-log";
import type { Database, Store } from "../../../lib/store/store";
import { SqliteDatabase } from "../../../lib/store/sqlite/sqlite-database";
import { failInTransaction, failOnce } from "../../helpers/stores";

/**
 * The saga engine without a broker, over a real NeDB store in memory. Its `call` reaches
 * a small world of three steps (a, b, c) and their undos, which keeps each effect once
 * per idempotency key, as the real services do, and can be told to refuse, time out or
 * break on chosen calls. A crash is a write of the log that throws; another engine over
 * the same store then recovers, as a restarted node does.
 */

type Plan = "refuse" | "timeout" | "break" | "breakAfter";

interface Call {
  action: string;
  key: string;
}

class World {
  readonly calls: Call[] = [];
  /** Effects by idempotency key: a repeated key changes nothing. */
  readonly effects = new Map<string, string>();
  private readonly plans = new Map<string, Plan[]>();
  private readonly gates = new Map<string, Promise<void>>();

  /** The next calls of `action` go as `plans` say, one plan per call. */
  plan(action: string, ...plans: Plan[]): void {
    this.plans.set(action, [...(this.plans.get(action) ?? []), ...plans]);
  }

  /** Calls of `action` wait until the returned function is called. */
  hold(action: string): () => void {
    let open!: () => void;
    this.gates.set(action, new Promise<void>(resolve => (open = resolve)));
    return () => {
      this.gates.delete(action);
      open();
    };
  }

  keysOf(action: string): string[] {
    return this.calls.filter(c => c.action === action).map(c => c.key);
  }

  readonly call = async (
    action: string,
    params: Record<string, unknown>,
    opts: SagaCallOptions,
  ): Promise<unknown> => {
    this.calls.push({ action, key: opts.idempotencyKey });
    await this.gates.get(action);
    const plan = this.plans.get(action)?.shift();
    if (plan === "refuse") throw new ClientError("Refused", 422, "NOPE");
    if (plan === "timeout")
      throw new Errors.RequestTimeoutError({ action, nodeID: "far" } as never);
    if (plan === "break") throw new Errors.MoleculerError("Boom", 500, "BOOM");
    if (!this.effects.has(opts.idempotencyKey)) this.effects.set(opts.idempotencyKey, action);
    if (plan === "breakAfter") throw new Errors.MoleculerError("Boom after", 500, "BOOM");
    return { did: action, key: opts.idempotencyKey, ...params };
  };
}

interface Input {
  n: number;
}

const STEPS = ["a", "b", "c"] as const;

/** Three steps, each undone by `undo<Step>` with the step's result. */
const definition = (needsResult = false): SagaDefinition<Input> => ({
  type: "test",
  steps: STEPS.map(name => ({
    name,
    action: `svc.${name}`,
    params: s => ({ n: s.input.n, after: Object.keys(s.results) }),
    compensate: {
      action: `svc.undo${name.toUpperCase()}`,
      params: (_s, result) => ({ undoing: (result as { key?: string } | undefined)?.key ?? null }),
      needsResult,
    },
  })),
});

class Logs {
  readonly lines: Array<{ level: string; obj: object; msg: string }> = [];
  info = (obj: object, msg: string) => void this.lines.push({ level: "info", obj, msg });
  warn = (obj: object, msg: string) => void this.lines.push({ level: "warn", obj, msg });
  error = (obj: object, msg: string) => void this.lines.push({ level: "error", obj, msg });
  at(level: string) {
    return this.lines.filter(l => l.level === level);
  }
}

let db: Database;
let store: Store<SagaDoc>;
let world: World;
let events: DomainEvent[];
let logs: Logs;
let engines = 0;

const engine = (
  opts: Partial<SagaEngineOptions> = {},
  needsResult = false,
  call: SagaCall = world.call,
): SagaEngine => {
  const e = new SagaEngine(
    db,
    {
      write: async ev => void events.push(...ev),
      has: async () => false,
      writeIn: async (_tx, ev) => () => void events.push(...ev),
    },
    call,
    logs,
    {
      owner: `engine-${++engines}`,
      leaseMs: 10_000,
      stepAttempts: 3,
      compensationAttempts: 4,
      backoffMs: 1,
      maxBackoffMs: 5,
      ...opts,
    },
  );
  e.define(definition(needsResult));
  return e;
};

const run = async (e: SagaEngine, key = "k1"): Promise<SagaDoc> => {
  const started = await e.start("test", "usr_ann", key, "fp", { n: 7 });
  await e.idle();
  return (await e.find(started._id))!;
};

const stepStates = (doc: SagaDoc) => doc.steps.map(s => s.state);
const ended = () => events.map(e => [e.type, (e.data as SagaEnded).state]);

beforeEach(async () => {
  db = SqliteDatabase.open(SAGA_COLLECTIONS);
  store = db.store<SagaDoc>("sagas");
  world = new World();
  events = [];
  logs = new Logs();
});

describe("saga engine", () => {
  it("runs the steps in order, each once with a key of the saga id and its name", async () => {
    const doc = await run(engine());
    expect(doc.state).toBe("completed");
    expect(stepStates(doc)).toEqual(["done", "done", "done"]);
    expect(world.calls).toEqual(STEPS.map(s => ({ action: `svc.${s}`, key: `${doc._id}:${s}` })));
    // Each step saw the results of the ones before it.
    expect(doc.result).toMatchObject({ c: { after: ["a", "b"] } });
    expect(doc).not.toHaveProperty("active");
    expect(doc).not.toHaveProperty("unpublished");
    expect(ended()).toEqual([["sagas.completed", "completed"]]);
    expect(events[0].eventId).toBe(`sagas.completed:${doc._id}`);
  });

  it("logs each step running before its call and done after it, in n writes after the insert", async () => {
    // What the log says while each call is out: the one step being called is `running`.
    const seen: string[][] = [];
    const e = engine({}, false, async (action, params, opts) => {
      const doc = await store.findOne({ _id: opts.sagaId });
      seen.push(doc!.steps.map(st => `${st.state}/${st.attempts}`));
      return world.call(action, params, opts);
    });
    const updateOne = store.updateOne.bind(store);
    let writes = 0;
    store.updateOne = (q, u) => {
      writes++;
      return updateOne(q, u);
    };
    const update = store.update.bind(store);
    store.update = (q, u) => {
      writes++;
      return update(q, u);
    };
    const transaction = db.transaction.bind(db);
    let transactions = 0;
    db.transaction = fn => {
      transactions++;
      return transaction(fn);
    };
    const doc = await run(e);
    expect(doc.state).toBe("completed");
    expect(seen).toEqual([
      ["running/1", "pending/0", "pending/0"],
      ["done/1", "running/1", "pending/0"],
      ["done/1", "done/1", "running/1"],
    ]);
    // The insert has a running; a done + b running; b done + c running; then c done, the
    // end and its event in the outbox: one transaction. (Each single write of the store
    // is a transaction of its own too: the insert, the two writes, the end.)
    expect(writes).toBe(2);
    expect(transactions).toBe(4);
  });

  it.each([0, 1, 2])("undoes the finished steps last first when step %i is refused", async i => {
    world.plan(`svc.${STEPS[i]}`, "refuse");
    const doc = await run(engine());
    expect(doc.state).toBe("compensated");
    expect(doc.error).toEqual({ step: STEPS[i], type: "NOPE", message: "Refused" });
    expect(stepStates(doc)).toEqual(
      STEPS.map((_, j) => (j < i ? "compensated" : j === i ? "failed" : "pending")),
    );
    const undos = world.calls.filter(c => c.action.startsWith("svc.undo"));
    const before = STEPS.slice(0, i).reverse();
    expect(undos).toEqual(
      before.map(s => ({ action: `svc.undo${s.toUpperCase()}`, key: `${doc._id}:${s}:undo` })),
    );
    // Each undo got the result of its own step.
    for (const s of before) expect(world.effects.get(`${doc._id}:${s}:undo`)).toBeDefined();
    expect(world.keysOf(`svc.${STEPS[i]}`)).toHaveLength(1); // a refusal is not retried
    expect(ended()).toEqual([["sagas.compensated", "compensated"]]);
  });

  it("retries a step that timed out, and goes on once it answers", async () => {
    world.plan("svc.b", "timeout", "timeout");
    const doc = await run(engine());
    expect(doc.state).toBe("completed");
    expect(doc.steps[1]).toMatchObject({ state: "done", attempts: 3, error: null });
    const keys = world.keysOf("svc.b");
    expect(keys).toHaveLength(3);
    expect(new Set(keys).size).toBe(1); // every retry with the same key
  });

  it("gives up on a step after its retries, and undoes it too: its outcome is unknown", async () => {
    world.plan("svc.b", "timeout", "timeout", "timeout");
    const doc = await run(engine());
    expect(doc.state).toBe("compensated");
    expect(doc.steps.map(s => [s.state, s.attempts])).toEqual([
      ["compensated", 1],
      ["compensated", 3],
      ["pending", 0],
    ]);
    expect(doc.error).toMatchObject({ step: "b", type: "SERVICE_UNAVAILABLE" });
    expect(world.keysOf("svc.undoB")).toEqual([`${doc._id}:b:undo`]);
  });

  it("replays a step that broke to learn its result before undoing it", async () => {
    const e = engine({}, true);
    world.plan("svc.b", "breakAfter"); // it did its work, then failed
    const doc = await run(e);
    expect(doc.state).toBe("compensated");
    expect(doc.error).toEqual({ step: "b", type: "INTERNAL_ERROR", message: "The step failed" });
    // The same key again told what b had done; its undo got that result.
    expect(world.keysOf("svc.b")).toEqual([`${doc._id}:b`, `${doc._id}:b`]);
    expect(doc.steps[1]).toMatchObject({ state: "compensated", result: { key: `${doc._id}:b` } });
    expect(world.calls.slice(-2).map(c => c.action)).toEqual(["svc.undoB", "svc.undoA"]);
  });

  it("retries a compensation that fails twice, then ends compensated", async () => {
    world.plan("svc.c", "refuse");
    world.plan("svc.undoB", "timeout", "break");
    const doc = await run(engine());
    expect(doc.state).toBe("compensated");
    expect(doc.steps[1]).toMatchObject({ state: "compensated", compensations: 3, error: null });
    expect(world.keysOf("svc.undoB")).toHaveLength(3);
    expect(new Set(world.keysOf("svc.undoB")).size).toBe(1);
    expect(doc.steps[0].state).toBe("compensated");
  });

  it("ends failed, logged at error level with its id, when a compensation keeps failing", async () => {
    world.plan("svc.c", "refuse");
    world.plan("svc.undoB", "break", "break", "break", "break");
    const doc = await run(engine());
    expect(doc.state).toBe("failed");
    expect(stepStates(doc)).toEqual(["done", "compensation-failed", "failed"]);
    expect(world.keysOf("svc.undoB")).toHaveLength(4);
    expect(world.keysOf("svc.undoA")).toEqual([]); // stopped there: a person looks first
    expect(logs.at("error")).toEqual([
      expect.objectContaining({ obj: expect.objectContaining({ sagaId: doc._id, step: "b" }) }),
    ]);
    expect(ended()).toEqual([["sagas.failed", "failed"]]);
    expect(doc).not.toHaveProperty("active");
  });

  it.each([0, 1, 2])(
    "replays step %i after a crash lost its answer, and its effect happens once",
    async i => {
      const first = engine();
      const lostAnswer = (_q: unknown, u: unknown) => {
        const steps = (u as { $set?: { steps?: Array<{ state: string }> } }).$set?.steps;
        return steps?.[i]?.state === "done";
      };
      // The last step's `done` is written in the transaction of the saga's end.
      const crash =
        i === STEPS.length - 1
          ? failInTransaction(db, "sagas", "updateOne", lostAnswer)
          : failOnce(store, "updateOne", lostAnswer);
      const started = await first.start("test", "usr_ann", "k1", "fp", { n: 7 });
      await first.idle();
      expect(crash.fired()).toBe(true);
      expect((await first.find(started._id))!.steps[i].state).toBe("running");

      // The node comes back: a new engine on the same log takes the saga over.
      const second = engine();
      expect(await second.recover(true)).toBe(1);
      await second.idle();
      const doc = (await second.find(started._id))!;
      expect(doc.state).toBe("completed");
      expect(doc.steps[i].attempts).toBe(2);
      const key = `${doc._id}:${STEPS[i]}`;
      expect(world.keysOf(`svc.${STEPS[i]}`)).toEqual([key, key]);
      expect([...world.effects.keys()]).toEqual(STEPS.map(s => `${doc._id}:${s}`));
      expect(ended()).toEqual([["sagas.completed", "completed"]]);
    },
  );

  it("forgets ended sagas past their retention, never one still running", async () => {
    const e = engine();
    const ended = await run(e, "ended");
    const release = world.hold("svc.a");
    const running = await e.start("test", "usr_ann", "running", "fp", { n: 1 });
    expect(await e.prune(new Date(Date.now() + 1000))).toBe(1);
    expect(await e.find(ended._id)).toBeNull();
    expect(await e.find(running._id)).not.toBeNull();
    release();
    await e.idle();
  });

  it("answers a repeated start with the first saga, and refuses the key for another request", async () => {
    const e = engine();
    const a = await e.start("test", "usr_ann", "same", "fp", { n: 1 });
    const b = await e.start("test", "usr_ann", "same", "fp", { n: 1 });
    expect(b._id).toBe(a._id);
    await expect(e.start("test", "usr_ann", "same", "other", { n: 2 })).rejects.toMatchObject({
      code: 409,
    });
    await e.idle();
    expect(world.keysOf("svc.a")).toHaveLength(1);
  });
});

describe("saga leases", () => {
  /** A saga as a node left it when it died: started, step a running, its lease running out. */
  const orphan = async (leaseUntil: number): Promise<SagaDoc> => {
    const now = new Date().toISOString();
    const doc: SagaDoc = {
      _id: "sag_orphan",
      type: "test",
      userId: "usr_ann",
      key: "orphan",
      fingerprint: "fp",
      state: "running",
      input: { n: 1 },
      steps: STEPS.map((name, i) => ({
        name,
        state: i === 0 ? "running" : "pending",
        attempts: i === 0 ? 1 : 0,
        compensations: 0,
      })),
      error: null,
      createdAt: now,
      updatedAt: now,
      active: true,
      owner: "dead-node",
      leaseUntil,
      version: 3,
    };
    await store.insert(doc);
    return doc;
  };

  it("writes once the event of an end an older version left unpublished, and clears its flag", async () => {
    const doc = await orphan(0);
    // Ended by a version that wrote the end and its event in two writes, then died between.
    await store.update(
      { _id: doc._id },
      { $set: { state: "completed", unpublished: true }, $unset: { active: true } },
    );
    const e = engine();
    expect(await e.recover()).toBe(0);
    expect(ended()).toEqual([["sagas.completed", "completed"]]);
    expect(await store.findOne({ _id: doc._id })).not.toHaveProperty("unpublished");
    await e.recover();
    expect(events).toHaveLength(1);
  });

  it("takes a saga over only once its lease expired", async () => {
    await orphan(Date.now() + 60_000);
    const e = engine();
    expect(await e.recover()).toBe(0);
    expect(world.calls).toEqual([]);
    expect(await store.findOne({ _id: "sag_orphan" })).toMatchObject({ owner: "dead-node" });

    await store.update({ _id: "sag_orphan" }, { $set: { leaseUntil: Date.now() - 1 } });
    expect(await e.recover()).toBe(1);
    await e.idle();
    expect(await store.findOne({ _id: "sag_orphan" })).toMatchObject({
      state: "completed",
      owner: "engine-" + engines,
    });
  });

  it("lets one of two engines racing for an expired saga drive it", async () => {
    await orphan(Date.now() - 1);
    const [a, b] = [engine(), engine()];
    const taken = await Promise.all([a.recover(), b.recover()]);
    expect(taken.sort()).toEqual([0, 1]);
    await Promise.all([a.idle(), b.idle()]);
    expect((await store.findOne({ _id: "sag_orphan" }))!.state).toBe("completed");
    for (const s of STEPS) expect(world.keysOf(`svc.${s}`)).toEqual([`sag_orphan:${s}`]);
  });

  it("stops an owner that stalled past its lease once another took its saga over", async () => {
    const release = world.hold("svc.b");
    const stalled = engine({ leaseMs: 60_000 });
    const started = await stalled.start("test", "usr_ann", "k1", "fp", { n: 7 });
    await expect.poll(() => world.keysOf("svc.b").length).toBe(1);
    // Its lease runs out while b is out (a long pause of that node, say).
    await store.update({ _id: started._id }, { $set: { leaseUntil: Date.now() - 1 } });
    const other = engine();
    expect(await other.recover()).toBe(1);
    release();
    await Promise.all([stalled.idle(), other.idle()]);

    const doc = (await store.findOne({ _id: started._id }))!;
    expect(doc).toMatchObject({ state: "completed", owner: `engine-${engines}` });
    expect(logs.at("warn").map(l => l.msg)).toContain(
      "Saga taken over by another node; this one stops",
    );
    // Both called b (same key, one effect); only the new owner went on to c.
    expect(world.keysOf("svc.b")).toEqual([`${doc._id}:b`, `${doc._id}:b`]);
    expect(world.keysOf("svc.c")).toEqual([`${doc._id}:c`]);
    expect(world.effects.size).toBe(3);
  });
});

/**
 * A callee that keeps its refusals by key, as tokens' journal does: a key it refused is
 * refused again, whatever has changed since (the purchase whose refund replayed the first
 * INSUFFICIENT_FUNDS for ever).
 */
function replayingRefusals(): SagaCall {
  const refused = new Set<string>();
  return async (action, params, opts) => {
    if (refused.has(opts.idempotencyKey)) throw new ClientError("Refused", 422, "NOPE");
    try {
      return await world.call(action, params, opts);
    } catch (err) {
      if (err instanceof ClientError) refused.add(opts.idempotencyKey);
      throw err;
    }
  };
}

describe("saga engine: calls that must succeed in the end", () => {
  it("asks a refused compensation again under a key of its own, and ends compensated", async () => {
    world.plan("svc.c", "refuse");
    // Refused twice for a business reason (say the money was not there yet), then it is.
    world.plan("svc.undoB", "refuse", "refuse");
    const doc = await run(engine({}, false, replayingRefusals()));
    expect(doc.state).toBe("compensated");
    const keys = world.keysOf("svc.undoB");
    expect(keys).toEqual([`${doc._id}:b:undo`, `${doc._id}:b:undo:r1`, `${doc._id}:b:undo:r2`]);
    expect(doc.steps[1]).toMatchObject({ state: "compensated", refusals: 2 });
    // The effect happened once, under the third key.
    expect([...world.effects.entries()].filter(([, a]) => a === "svc.undoB")).toHaveLength(1);
  });

  it("keeps the key of a compensation that broke (it may have done its work)", async () => {
    world.plan("svc.c", "refuse");
    world.plan("svc.undoB", "breakAfter");
    const doc = await run(engine({}, false, replayingRefusals()));
    expect(doc.state).toBe("compensated");
    expect(new Set(world.keysOf("svc.undoB"))).toEqual(new Set([`${doc._id}:b:undo`]));
  });

  it("learns an untilKnown step's unknown outcome by asking again: done goes on, a refusal undoes the steps before", async () => {
    const e = engine({}, true);
    const def = definition(true);
    e.define({
      ...def,
      type: "known",
      steps: def.steps.map(s => (s.name === "b" ? { ...s, untilKnown: true } : s)),
    });
    // b did its work and its answer was lost, then timed out past stepAttempts (3).
    world.plan("svc.b", "breakAfter", "timeout", "timeout", "timeout");
    const first = await e.start("known", "usr_ann", "k1", "fp", { n: 7 });
    await e.idle();
    const done = (await e.find(first._id))!;
    expect(done.state).toBe("completed");
    expect(stepStates(done)).toEqual(["done", "done", "done"]);
    expect(done.steps[1]).toMatchObject({ attempts: 5, result: { key: `${done._id}:b` } });
    expect(new Set(world.keysOf("svc.b"))).toEqual(new Set([`${done._id}:b`]));
    expect(world.keysOf("svc.undoB")).toEqual([]);

    // A break, then a refusal: b did nothing; a is undone, b is not.
    world.plan("svc.b", "break", "refuse");
    const second = await e.start("known", "usr_ann", "k2", "fp", { n: 7 });
    await e.idle();
    const undone = (await e.find(second._id))!;
    expect(undone.state).toBe("compensated");
    expect(stepStates(undone)).toEqual(["compensated", "failed", "pending"]);
    expect(undone.steps[1].uncertain).toBe(false);
    expect(undone.error).toMatchObject({ step: "b", type: "NOPE" });
    expect(world.keysOf("svc.undoB")).toEqual([]);
    expect(world.keysOf("svc.undoA")).toEqual([`${undone._id}:a:undo`]);
  });

  it("never undoes a saga past a forward-only step: it is called again until it succeeds", async () => {
    const e = engine({}, false, replayingRefusals());
    const def = definition();
    e.define({
      ...def,
      type: "forward",
      steps: def.steps.map(s => (s.name === "c" ? { ...s, forwardOnly: true } : s)),
    });
    // More failures than stepAttempts (3) and compensationAttempts (4) allow: still goes on.
    world.plan("svc.c", "timeout", "break", "refuse", "timeout", "refuse", "break");
    const started = await e.start("forward", "usr_ann", "k1", "fp", { n: 7 });
    await e.idle();
    const doc = (await e.find(started._id))!;
    expect(doc.state).toBe("completed");
    expect(stepStates(doc)).toEqual(["done", "done", "done"]);
    expect(world.keysOf("svc.undoA")).toEqual([]);
    expect(world.keysOf("svc.undoB")).toEqual([]);
    const c = `${doc._id}:c`;
    // A refusal moves to a key of its own; a timeout or a break keeps the key.
    expect(world.keysOf("svc.c")).toEqual([c, c, c, `${c}:r1`, `${c}:r1`, `${c}:r2`, `${c}:r2`]);
  });
});
