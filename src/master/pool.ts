/**
 * The pool plan: what the master should do next with its workers, as a pure function of
 * the workers, the target and the time. No I/O, no timers: the arbiter executes the answer
 * and calls again whenever something changed. docs/reload.md describes the semantics.
 *
 * - The newest generation wins: workers of a superseded generation that still boot are
 *   stopped; ready ones keep serving until enough workers of the goal generation are ready.
 * - A generation that failed to boot takes no serving worker down: every ready worker stays,
 *   and the pool is topped up from the newest generation that did boot.
 * - Crash backoff belongs to a slot (0 .. target-1), and only a worker that failed to boot
 *   or died young without serving feeds it.
 * - A generation whose workers compile TypeScript into a shared cache (compile-cache.ts) boots
 *   one worker until one is ready; the others then start from what it compiled.
 */

/** Why the master stops a worker. */
export type StopReason =
  | 'reload'
  | 'superseded'
  | 'reload failed'
  | 'scale down'
  | 'winch'
  | 'max-requests'
  | 'memory'
  | 'app error'
  | 'timeout'
  | 'boot-timeout'
  | 'shutdown';

/** What a worker asks for, or the master decides, while it still serves: replace it. */
export type RecycleReason = Extract<StopReason, 'max-requests' | 'memory'>;

/** A worker as the plan sees it. Draining and exited workers are not passed in. */
export interface PoolWorker {
  id: number;
  generation: number;
  slot: number;
  state: 'booting' | 'ready';
  /** Set when it is to be replaced while it serves (max-requests, memory). */
  recycle: RecycleReason | null;
}

/** A generation's boot record: did any of its workers become ready, did one fail to boot. */
export interface GenerationStatus {
  booted: boolean;
  failed: boolean;
  /** Its workers compile TypeScript into a cache on disk that the next worker reads: boot one first. */
  warmsCache: boolean;
}

/** Per slot: young deaths in a row, and when its next worker may start. */
export interface SlotBackoff {
  crashes: number;
  notBefore: number;
}

export interface PoolInput {
  now: number;
  /** `workers`, as changed by TTIN/TTOU/WINCH/scale. */
  target: number;
  /** The newest generation requested (first start, HUP, reload, file change). */
  newest: number;
  /** How many workers of a new generation may boot at once while others serve. */
  batch: number;
  generations: ReadonlyMap<number, GenerationStatus>;
  workers: readonly PoolWorker[];
  slots: ReadonlyMap<number, SlotBackoff>;
}

export interface PoolPlan {
  /** The generation new workers belong to. */
  goal: number;
  start: Array<{ slot: number; generation: number }>;
  retire: Array<{ id: number; reason: StopReason; graceful: boolean }>;
  /** When to ask again because a slot's backoff ends; null if nothing waits. */
  wakeAt: number | null;
  /** Exactly `target` ready workers of the goal generation, nothing booting or leaving. */
  converged: boolean;
}

export const BACKOFF_FIRST_MS = 100;
export const BACKOFF_CAP_MS = 30_000;
/** A worker that served requests, or was ready this long, before it died was not crash-looping. */
export const HEALTHY_AFTER_MS = 5_000;

/** The generation new workers get: the newest, unless it failed; then the newest that booted. */
export function goalGeneration(newest: number, generations: ReadonlyMap<number, GenerationStatus>): number {
  if (!generations.get(newest)?.failed) return newest;
  const booted = [...generations].filter(([, s]) => s.booted).map(([g]) => g);
  return booted.length > 0 ? Math.max(...booted) : newest;
}

/** The default `reload_batch`: a quarter of the workers, at least one. */
export function defaultBatch(workers: number): number {
  return Math.max(1, Math.floor(workers / 4));
}

export function plan(input: PoolInput): PoolPlan {
  const { now, target, newest, generations, workers } = input;
  const goal = goalGeneration(newest, generations);
  // Replacing: the newest is good (so far), and every worker of another generation goes.
  // Keeping: the newest failed, and every ready worker stays whatever its generation.
  const replacing = goal === newest && !generations.get(newest)?.failed;
  const byAge = (a: PoolWorker, b: PoolWorker): number => a.generation - b.generation || a.id - b.id;
  const isMember = (w: PoolWorker): boolean =>
    w.recycle === null && (w.state === 'booting' || replacing ? w.generation === goal : true);
  const members = workers.filter(isMember);
  const retire: PoolPlan['retire'] = [];

  for (const w of workers.filter((o) => o.state === 'booting' && !isMember(o))) {
    retire.push({
      id: w.id,
      reason: generations.get(w.generation)?.failed ? 'reload failed' : 'superseded',
      graceful: false,
    });
  }

  // Too many (TTOU, WINCH, scale): booting ones first, newest first; then the oldest ready.
  const surplus = members.length - target;
  const kept = new Set(members);
  if (surplus > 0) {
    const booting = members.filter((w) => w.state === 'booting').sort((a, b) => b.id - a.id);
    const ready = members.filter((w) => w.state === 'ready').sort(byAge);
    for (const w of [...booting, ...ready].slice(0, surplus)) {
      kept.delete(w);
      retire.push({ id: w.id, reason: target === 0 ? 'winch' : 'scale down', graceful: w.state === 'ready' });
    }
  }
  const keep = members.filter((w) => kept.has(w));
  const readyMembers = keep.filter((w) => w.state === 'ready').length;

  // Leaving workers serve until the ready members cover the target without them.
  const leaving = workers.filter((w) => w.state === 'ready' && !isMember(w)).sort(byAge);
  let remaining = leaving.length;
  for (const w of leaving) {
    if (readyMembers + remaining - 1 < target) break;
    retire.push({ id: w.id, reason: w.recycle ?? 'reload', graceful: true });
    remaining--;
  }

  // Boot up to `pace` at once while others serve; as many as nobody serves otherwise.
  // Old generations are replaced `batch` at a time; recycles (max-requests) stay one at a time.
  const readyAll = workers.filter((w) => w.state === 'ready').length;
  const bootingMembers = keep.filter((w) => w.state === 'booting').length;
  const pace = leaving.some((w) => w.generation !== goal) ? input.batch : 1;
  // One worker warms the compile cache while its generation has none ready: the rest would
  // each compile the same files at the same time.
  const goalStatus = generations.get(goal);
  const warming = goalStatus?.warmsCache === true && !goalStatus.booted;
  const allowed = (warming ? 1 : Math.max(pace, target - readyAll)) - bootingMembers;
  const missing = Math.min(target - keep.length, allowed);
  const held = new Set(keep.map((w) => w.slot));
  const start: PoolPlan['start'] = [];
  let wakeAt: number | null = null;
  for (let slot = 0, wanted = missing; wanted > 0; slot++) {
    if (held.has(slot)) continue;
    wanted--;
    const notBefore = input.slots.get(slot)?.notBefore ?? 0;
    if (notBefore > now) wakeAt = Math.min(wakeAt ?? notBefore, notBefore);
    else start.push({ slot, generation: goal });
  }

  const converged =
    retire.length === 0 &&
    start.length === 0 &&
    wakeAt === null &&
    workers.length === target &&
    workers.every((w) => w.state === 'ready' && w.generation === goal && w.recycle === null);
  return { goal, start, retire, wakeAt, converged };
}

/** How a worker ended, for its slot's backoff. */
export interface WorkerEnd {
  slot: number;
  /** The master stopped it (reload, scale, recycle, shutdown): not a crash. */
  expected: boolean;
  /** Ready for this long before it died; null if it never became ready. */
  readyForMs: number | null;
  requests: number;
}

export function backoffMs(crashes: number): number {
  return Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, crashes - 1));
}

/**
 * The slot's backoff after a worker ended: a worker that served, or stayed ready
 * HEALTHY_AFTER_MS, clears it; one that failed to boot or died young without serving extends it.
 */
export function afterExit(
  slots: ReadonlyMap<number, SlotBackoff>,
  end: WorkerEnd,
  now: number,
): Map<number, SlotBackoff> {
  const next = new Map(slots);
  const healthy = end.readyForMs !== null && (end.requests > 0 || end.readyForMs >= HEALTHY_AFTER_MS);
  if (healthy) next.delete(end.slot);
  else if (!end.expected) {
    const crashes = (slots.get(end.slot)?.crashes ?? 0) + 1;
    next.set(end.slot, { crashes, notBefore: now + backoffMs(crashes) });
  }
  return next;
}
