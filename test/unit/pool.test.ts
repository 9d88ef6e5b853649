/**
 * The pool plan (src/master/pool.ts) driven by a small simulator: it executes each plan as the
 * arbiter does (a retired worker leaves the pool, a started one boots) and lets the test
 * decide which workers become ready, fail to boot or crash. Milliseconds per test.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  afterExit,
  defaultBatch,
  goalGeneration,
  plan,
  type GenerationStatus,
  type PoolPlan,
  type PoolWorker,
  type SlotBackoff,
  type StopReason,
} from '../../src/master/pool.js';

class Sim {
  now = 0;
  newest = 1;
  workers: PoolWorker[] = [];
  generations: Map<number, GenerationStatus>;
  slots = new Map<number, SlotBackoff>();
  retired: Array<{ id: number; generation: number; reason: StopReason }> = [];
  lastId = 0;
  last!: PoolPlan;

  /**
   * `warms`: the app is TypeScript compiled into tsx's shared cache (compile-cache.ts), so each
   * generation boots one worker first; a HUP may say otherwise for its generation.
   */
  constructor(
    public target: number,
    public batch = 1,
    public warms = false,
    /** 'booting': the first start's workers are left booting, for the test to drive. */
    start: 'ready' | 'booting' = 'ready',
  ) {
    this.generations = new Map([[1, { booted: false, failed: false, warmsCache: warms }]]);
    this.step();
    if (start === 'ready') this.readyAll();
  }

  /** Plan and execute until the plan has nothing more to do, as the arbiter's loop does. */
  step(): PoolPlan {
    for (let i = 0; i < 10; i++) if (this.once()) return this.last;
    assert.fail('the plan keeps acting on an unchanged pool');
  }

  private once(): boolean {
    const p = plan({
      now: this.now,
      target: this.target,
      newest: this.newest,
      batch: this.batch,
      generations: this.generations,
      workers: this.workers,
      slots: this.slots,
    });
    for (const r of p.retire) {
      const w = this.workers.find((x) => x.id === r.id)!;
      assert.ok(w, `retires a worker it was given (${r.id})`);
      this.retired.push({ id: w.id, generation: w.generation, reason: r.reason });
      this.workers = this.workers.filter((x) => x !== w);
    }
    for (const s of p.start)
      this.workers.push({ id: ++this.lastId, generation: s.generation, slot: s.slot, state: 'booting', recycle: null });
    this.last = p;
    return p.start.length === 0 && p.retire.length === 0;
  }

  /** A new generation; as the arbiter does, it clears the slots' backoff. */
  hup(warms = this.warms): void {
    this.slots = new Map();
    this.newest++;
    this.generations.set(this.newest, { booted: false, failed: false, warmsCache: warms });
    this.step();
  }

  ready(w: PoolWorker): void {
    w.state = 'ready';
    this.generations.get(w.generation)!.booted = true;
    this.step();
  }

  /** A worker dies on its own: a boot failure if it never became ready. */
  die(w: PoolWorker, served = false): void {
    this.workers = this.workers.filter((x) => x !== w);
    if (w.state === 'booting' && w.generation === this.newest) this.generations.get(w.generation)!.failed = true;
    this.slots = afterExit(
      this.slots,
      { slot: w.slot, expected: false, readyForMs: w.state === 'ready' ? 10 : null, requests: served ? 1 : 0 },
      this.now,
    );
    this.step();
  }

  booting(generation?: number): PoolWorker[] {
    return this.workers.filter(
      (w) => w.state === 'booting' && (generation === undefined || w.generation === generation),
    );
  }

  readyCount(generation?: number): number {
    return this.workers.filter((w) => w.state === 'ready' && (generation === undefined || w.generation === generation))
      .length;
  }

  /** Make every booting worker ready, one at a time, until nothing boots. */
  readyAll(): void {
    for (let b = this.booting()[0]; b; b = this.booting()[0]) this.ready(b);
  }

  /** Let backoffs run out. */
  wait(ms: number): void {
    this.now += ms;
    this.step();
  }

  gens(): number[] {
    return this.workers.map((w) => w.generation);
  }
}

test('first start boots every worker at once, and converges', () => {
  const sim = new Sim(4);
  assert.equal(sim.lastId, 4);
  assert.ok(sim.last.converged);
  assert.deepEqual(sim.gens(), [1, 1, 1, 1]);
});

test('a reload with batch 1 boots one at a time and never serves with fewer than 4 ready', () => {
  const sim = new Sim(4, 1);
  sim.hup();
  for (let i = 0; i < 4; i++) {
    assert.equal(sim.booting().length, 1, 'one new worker boots at a time');
    assert.equal(sim.readyCount(), 4);
    sim.ready(sim.booting(2)[0]!);
  }
  assert.ok(sim.last.converged);
  assert.deepEqual(sim.gens(), [2, 2, 2, 2]);
  assert.deepEqual(
    sim.retired.map((r) => r.reason),
    ['reload', 'reload', 'reload', 'reload'],
  );
});

test('a reload with batch 4 of 16 workers boots four at a time', () => {
  const sim = new Sim(16, defaultBatch(16));
  sim.hup();
  let rounds = 0;
  while (!sim.last.converged) {
    assert.ok(sim.booting().length <= 4);
    assert.ok(sim.readyCount() >= 16);
    const booting = sim.booting();
    for (const b of booting) sim.ready(b);
    rounds++;
  }
  assert.equal(rounds, 4);
  assert.equal(sim.readyCount(2), 16);
});

test('a HUP during a HUP: the newest wins, the superseded booting worker stops, serving ones stay', () => {
  const sim = new Sim(4, 1);
  sim.hup();
  sim.ready(sim.booting(2)[0]!);
  sim.hup();
  assert.deepEqual(sim.retired.at(-1)?.reason, 'superseded');
  assert.equal(sim.readyCount(), 4, 'three of generation 1 and one of generation 2 serve');
  sim.readyAll();
  assert.ok(sim.last.converged);
  assert.deepEqual(sim.gens(), [3, 3, 3, 3]);
});

test('five overlapping HUPs end with 4 ready workers of the fifth generation', () => {
  const sim = new Sim(4, 2);
  for (let i = 0; i < 5; i++) {
    sim.hup();
    const b = sim.booting()[0];
    if (b) sim.ready(b);
    assert.ok(sim.readyCount() >= 4);
  }
  sim.readyAll();
  assert.ok(sim.last.converged);
  assert.deepEqual(sim.gens(), [6, 6, 6, 6]);
  const ids = sim.retired.map((r) => r.id);
  assert.equal(new Set(ids).size, ids.length, 'no worker retired twice');
});

test('a failing newest generation with one older generation serving keeps every ready worker', () => {
  const sim = new Sim(4, 1);
  sim.hup();
  sim.ready(sim.booting(2)[0]!);
  sim.die(sim.booting(2)[0]!);
  assert.equal(sim.readyCount(), 4, 'one of generation 2 and three of generation 1');
  assert.equal(sim.last.goal, 2, 'generation 2 booted: top-ups come from it');
  assert.equal(sim.booting().length, 0);
  assert.deepEqual(
    sim.retired.map((r) => r.reason),
    ['reload'],
  );
});

test('a failing newest generation with two older generations serving keeps them all; a crash is topped up from the newest that booted', () => {
  const sim = new Sim(4, 1);
  sim.hup();
  sim.ready(sim.booting(2)[0]!);
  sim.hup();
  sim.ready(sim.booting(3)[0]!);
  sim.hup();
  sim.die(sim.booting(4)[0]!);
  assert.equal(sim.readyCount(), 4);
  assert.deepEqual(sim.gens().sort(), [1, 1, 2, 3]);
  assert.equal(sim.last.goal, 3);
  sim.die(
    sim.workers.find((w) => w.generation === 1)!,
    true,
  );
  assert.deepEqual(
    sim.booting().map((w) => w.generation),
    [3],
    'a worker that served restarts at once',
  );
});

test('a fix after a failure converges, with no backoff left', () => {
  const sim = new Sim(2, 1);
  sim.hup();
  sim.die(sim.booting(2)[0]!);
  assert.equal(sim.last.goal, 1);
  assert.deepEqual(sim.gens(), [1, 1]);
  sim.hup();
  sim.readyAll();
  assert.ok(sim.last.converged);
  assert.deepEqual(sim.gens(), [3, 3]);
  assert.equal(goalGeneration(3, sim.generations), 3);
});

test('a broken top-up backs off in its own slot only', () => {
  const sim = new Sim(2, 1);
  sim.die(sim.workers[0]!);
  assert.equal(sim.booting().length, 0, 'the slot of a young death waits');
  assert.ok(sim.last.wakeAt !== null && sim.last.wakeAt > sim.now);
  sim.wait(100);
  assert.equal(sim.booting().length, 1);
  sim.die(sim.booting()[0]!);
  sim.wait(100);
  assert.equal(sim.booting().length, 0, 'the second young death waits longer');
  sim.wait(100);
  assert.equal(sim.booting().length, 1);
  assert.equal(sim.readyCount(), 1, 'the other slot serves throughout');
});

test('TTIN, TTOU and max-requests during a reload keep the counts right', () => {
  const sim = new Sim(3, 1);
  sim.hup();
  sim.target = 4;
  sim.step();
  sim.ready(sim.booting(2)[0]!);
  sim.workers.find((w) => w.generation === 1)!.recycle = 'max-requests';
  sim.step();
  sim.target = 2;
  sim.step();
  assert.ok(sim.readyCount() >= 2);
  sim.readyAll();
  assert.ok(sim.last.converged);
  assert.deepEqual(sim.gens(), [2, 2]);
  const ids = sim.retired.map((r) => r.id);
  assert.equal(new Set(ids).size, ids.length);
});

test('max-requests recycles stay one at a time', () => {
  const sim = new Sim(8, 2);
  for (const w of sim.workers.slice(0, 3)) w.recycle = 'max-requests';
  sim.step();
  assert.equal(sim.booting().length, 1);
  assert.equal(sim.readyCount(), 8);
  sim.readyAll();
  assert.ok(sim.last.converged);
  assert.equal(sim.retired.filter((r) => r.reason === 'max-requests').length, 3);
});

test('a crash of an old and of a new worker during a reload: the pool still converges', () => {
  const sim = new Sim(4, 2);
  sim.hup();
  sim.die(
    sim.workers.find((w) => w.generation === 1 && w.state === 'ready')!,
    true,
  );
  assert.equal(sim.booting().length, 2);
  sim.ready(sim.booting(2)[0]!);
  sim.die(
    sim.workers.find((w) => w.generation === 2 && w.state === 'ready')!,
    true,
  );
  assert.equal(sim.last.goal, 2, 'a crash after ready is no boot failure');
  sim.readyAll();
  assert.ok(sim.last.converged);
  assert.deepEqual(sim.gens(), [2, 2, 2, 2]);
});

test('WINCH retires everything; TTIN starts again', () => {
  const sim = new Sim(2);
  sim.target = 0;
  sim.step();
  assert.equal(sim.workers.length, 0);
  assert.deepEqual(
    sim.retired.map((r) => r.reason),
    ['winch', 'winch'],
  );
  sim.target = 1;
  sim.step();
  assert.equal(sim.booting().length, 1);
});

test('a TypeScript app (warmsCache) boots one worker at first start, then the rest at once', () => {
  const sim = new Sim(4, 1, true, 'booting');
  assert.equal(sim.booting().length, 1, 'one worker compiles the app');
  sim.step();
  assert.equal(sim.booting().length, 1, 'asking again starts no other');
  sim.ready(sim.booting()[0]!);
  assert.equal(sim.booting().length, 3, 'once it is ready, the others boot together');
  sim.readyAll();
  assert.ok(sim.last.converged);
});

test('a JavaScript app boots every worker at once', () => {
  const sim = new Sim(4, 1, false, 'booting');
  assert.equal(sim.booting().length, 4);
});

test('a TypeScript app reloads with one new worker first, then `batch` at a time', () => {
  const sim = new Sim(8, 4, true);
  sim.hup();
  assert.equal(sim.booting(2).length, 1, 'one worker of generation 2 warms the cache');
  assert.equal(sim.readyCount(1), 8, 'generation 1 serves meanwhile');
  sim.ready(sim.booting(2)[0]!);
  assert.equal(sim.booting(2).length, 4, 'then the batch');
  assert.ok(sim.readyCount() >= 8);
  sim.readyAll();
  assert.ok(sim.last.converged);
  assert.deepEqual(sim.gens(), [2, 2, 2, 2, 2, 2, 2, 2]);
});

test('a HUP during a TypeScript reload: the newest generation warms its own cache first', () => {
  const sim = new Sim(4, 2, true);
  sim.hup();
  sim.hup();
  assert.deepEqual(
    sim.retired.map((r) => r.reason),
    ['superseded'],
  );
  assert.deepEqual(
    sim.booting().map((w) => w.generation),
    [3],
  );
  sim.ready(sim.booting(3)[0]!);
  assert.equal(sim.booting(3).length, 2);
  sim.readyAll();
  assert.ok(sim.last.converged);
  assert.deepEqual(sim.gens(), [3, 3, 3, 3]);
});

test('a TypeScript reload whose first worker fails to boot ends as a JavaScript one does', () => {
  const outcome = (warms: boolean) => {
    const sim = new Sim(4, 2, warms);
    sim.hup();
    sim.die(sim.booting(2)[0]!);
    return {
      goal: sim.last.goal,
      gens: sim.gens(),
      ready: sim.readyCount(),
      booting: sim.booting().length,
      failed: sim.generations.get(2)!.failed,
      wakeAt: sim.last.wakeAt,
    };
  };
  const ts = outcome(true);
  assert.deepEqual(ts, outcome(false));
  assert.deepEqual(ts, { goal: 1, gens: [1, 1, 1, 1], ready: 4, booting: 0, failed: true, wakeAt: null });
});

test('a TypeScript generation that booted tops up and scales as any other', () => {
  const sim = new Sim(2, 1, true);
  sim.target = 5;
  sim.step();
  assert.equal(sim.booting().length, 3, 'TTIN after the cache is warm: no one-first');
  sim.readyAll();
  sim.die(sim.workers[0]!, true);
  assert.equal(sim.booting().length, 1);
});

test('a TypeScript worker that crashes before ready: its slot backs off, and no other worker starts meanwhile', () => {
  const sim = new Sim(3, 1, true, 'booting');
  // A first-start crash that is no boot failure (the arbiter stops the master on a boot failure).
  const w = sim.booting()[0]!;
  sim.workers = sim.workers.filter((x) => x !== w);
  sim.slots = afterExit(sim.slots, { slot: w.slot, expected: false, readyForMs: null, requests: 0 }, sim.now);
  sim.step();
  assert.equal(sim.booting().length, 0, 'the slot waits out its backoff');
  assert.ok(sim.last.wakeAt !== null);
  sim.wait(100);
  assert.equal(sim.booting().length, 1, 'one worker again');
  sim.ready(sim.booting()[0]!);
  assert.equal(sim.booting().length, 2);
});

type Op =
  | { k: 'hup'; warms: boolean }
  | { k: 'ready'; i: number }
  | { k: 'fail'; i: number }
  | { k: 'crash'; i: number }
  | { k: 'scale'; n: number }
  | { k: 'recycle'; i: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('hup' as const), warms: fc.boolean() }),
  fc.record({ k: fc.constant('ready' as const), i: fc.nat(20) }),
  fc.record({ k: fc.constant('ready' as const), i: fc.nat(20) }),
  fc.record({ k: fc.constant('fail' as const), i: fc.nat(20) }),
  fc.record({ k: fc.constant('crash' as const), i: fc.nat(20) }),
  fc.record({ k: fc.constant('scale' as const), n: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ k: fc.constant('recycle' as const), i: fc.nat(20) }),
);

test('properties: ready workers never drop below min(ready before, target) by the plan; nobody retired twice; always converging', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 1, max: 3 }),
      fc.boolean(),
      fc.array(op, { maxLength: 40 }),
      (target, batch, warms, ops) => {
        const sim = new Sim(target, batch, warms);
        const planned = (): void => {
          const before = sim.readyCount();
          sim.step();
          assert.ok(
            sim.readyCount() >= Math.min(before, sim.target),
            'a plan step never takes ready workers below the target',
          );
          const goal = sim.generations.get(sim.last.goal)!;
          if (goal.warmsCache && !goal.booted)
            assert.ok(sim.booting(sim.last.goal).length <= 1, 'one worker warms the cache');
        };
        for (const o of ops) {
          const pick = (i: number, state: PoolWorker['state']): PoolWorker | undefined =>
            sim.workers.filter((w) => w.state === state)[i % 7];
          if (o.k === 'hup') sim.hup(o.warms);
          else if (o.k === 'scale') sim.target = o.n;
          else if (o.k === 'ready') {
            const w = pick(o.i, 'booting');
            if (w) {
              w.state = 'ready';
              sim.generations.get(w.generation)!.booted = true;
            }
          } else if (o.k === 'fail') {
            const w = pick(o.i, 'booting');
            if (w) sim.die(w);
          } else if (o.k === 'crash') {
            const w = pick(o.i, 'ready');
            if (w) sim.die(w, true);
          } else {
            const w = pick(o.i, 'ready');
            if (w) w.recycle = 'max-requests';
          }
          planned();
        }
        // Fixed code: booting works from now on; a last HUP if the newest failed.
        if (sim.generations.get(sim.newest)!.failed) sim.hup();
        for (let i = 0; i < 200 && !sim.last.converged; i++) {
          const b = sim.booting()[0];
          if (b) {
            b.state = 'ready';
            sim.generations.get(b.generation)!.booted = true;
            planned();
          } else sim.wait(30_000);
        }
        assert.ok(sim.last.converged, 'converges');
        assert.equal(sim.readyCount(sim.newest), sim.target);
        const ids = sim.retired.map((r) => r.id);
        assert.equal(new Set(ids).size, ids.length, 'no worker retired twice');
      },
    ),
    { numRuns: 500 },
  );
});
