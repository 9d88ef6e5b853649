/**
 * Reloads that overlap (docs/reload.md; src/master/pool.ts), with real processes, signals,
 * file edits and HTTP: a generation whose code breaks while it boots takes no serving worker
 * down and a fix converges; the `--reload` save/break/fix sequence ends on the fix; ten HUPs in
 * a second lose no request; a 16-worker reload boots `reload_batch` workers at a time.
 *
 * The app is a copy of test/fixtures/reload-overlap/ in a scratch directory: it waits
 * BOOT_DELAY_MS, then imports ./version.mjs, and answers `VERSION PID`.
 */
import assert from 'node:assert/strict';
import { cpSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, request, scratchDir, settle, sleep, Tsgun } from '../helpers.js';

function appDir(): string {
  const dir = scratchDir('tsgun-reload-overlap-');
  cpSync(path.join(FIXTURES, 'reload-overlap'), dir, { recursive: true });
  return dir;
}

function setVersion(dir: string, version: string): void {
  writeFileSync(path.join(dir, 'version.mjs'), `export const VERSION = '${version}';\n`);
}

function breakVersion(dir: string): void {
  writeFileSync(path.join(dir, 'version.mjs'), 'export const VERSION = ;\n');
}

function start(dir: string, args: string[], bootDelayMs: number): Tsgun {
  return new Tsgun(['-b', '127.0.0.1:0', '--graceful-timeout', '5', ...args, 'app.mjs:app'], {
    cwd: dir,
    env: { BOOT_DELAY_MS: String(bootDelayMs) },
  });
}

/** The versions answered by `n` requests on fresh connections. */
async function versions(url: string, n: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < n; i++) {
    const reply = await request(url);
    assert.equal(reply.status, 200, reply.body);
    seen.push(reply.body.split(' ')[0]!);
  }
  return seen;
}

async function until(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test('a 4-worker HUP whose code breaks while the new generation boots keeps 4 workers serving, and a fix converges', async (t) => {
  const dir = appDir();
  const tsgun = start(dir, ['-w', '4'], 1500);
  t.after(() => tsgun.stop());
  await tsgun.waitForLine(/^Ready: 4 workers serving/, 60_000);
  const [url] = await tsgun.listening();
  setVersion(dir, 'v2');
  tsgun.signal('SIGHUP');
  await until('v2 served', async () => (await versions(url!, 1))[0] === 'v2');
  breakVersion(dir);
  await tsgun.waitForLine(/^Error: reload failed/, 30_000);
  const mark = tsgun.lines.length;
  await settle(tsgun.pid, 4, 'four workers after the failed reload');
  await sleep(3000);
  assert.deepEqual(
    tsgun.lines
      .slice(mark)
      .filter((l) => /^Restarting the worker|^Retiring worker/.test(l.msg ?? ''))
      .map((l) => l.msg),
    [],
  );
  const seen = await versions(url!, 20);
  assert.ok(
    seen.every((v) => v === 'v1' || v === 'v2'),
    seen.join(' '),
  );
  assert.equal((await settle(tsgun.pid, 4, 'four workers still')).length, 4);

  setVersion(dir, 'v3');
  const before = tsgun.lines.length;
  tsgun.signal('SIGHUP');
  await tsgun.waitForLine(/^Reload complete: generation 3 ready \(4 workers/, 60_000, before);
  assert.deepEqual(new Set(await versions(url!, 20)), new Set(['v3']));
  await settle(tsgun.pid, 4, 'four workers of generation 3');
});

test('--reload: save v2, a syntax error while the reload is in flight, then a fix: ends serving v4 with no crash loop', async (t) => {
  const dir = appDir();
  const tsgun = start(dir, ['-w', '2', '--reload'], 1000);
  t.after(() => tsgun.stop());
  await tsgun.waitForLine(/^Ready: 2 workers serving/, 60_000);
  const [url] = await tsgun.listening();
  setVersion(dir, 'v2');
  await until('v2 served', async () => (await versions(url!, 1))[0] === 'v2');
  const mark = tsgun.lines.length;
  breakVersion(dir);
  await tsgun.waitForLine(/^Error: reload failed/, 30_000, mark);
  const broken = await versions(url!, 20);
  assert.ok(broken.includes('v2'), `the ready worker of generation 2 keeps serving: ${broken.join(' ')}`);
  assert.ok(
    broken.every((v) => v === 'v1' || v === 'v2'),
    broken.join(' '),
  );
  setVersion(dir, 'v4');
  await until(
    'only v4 served',
    async () => new Set(await versions(url!, 10)).size === 1 && (await versions(url!, 1))[0] === 'v4',
    60_000,
  );
  const done = await tsgun.waitForLine(/^Reload complete: generation \d+ ready \(2 workers/, 30_000);
  await settle(tsgun.pid, 2, 'two workers of the last generation');
  await sleep(2000);
  assert.deepEqual(
    tsgun.lines
      .slice(tsgun.lines.indexOf(done))
      .filter((l) => /^Restarting the worker/.test(l.msg ?? ''))
      .map((l) => l.msg),
    [],
    'no crash loop left',
  );
  assert.deepEqual(new Set(await versions(url!, 10)), new Set(['v4']));
});

test('ten HUPs within a second under a loop of requests lose no request and end with 2 workers of generation 11', async (t) => {
  const dir = appDir();
  const tsgun = start(dir, ['-w', '2'], 0);
  t.after(() => tsgun.stop());
  await tsgun.waitForLine(/^Ready: 2 workers serving/, 60_000);
  const [url] = await tsgun.listening();
  let running = true;
  let ok = 0;
  const failures: string[] = [];
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        const reply = await request(url!);
        if (reply.status === 200) ok++;
        else failures.push(`status ${reply.status}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  const loops = [loop(), loop(), loop()];
  for (let i = 0; i < 10; i++) {
    tsgun.signal('SIGHUP');
    await sleep(90);
  }
  await tsgun.waitForLine(/^Reload complete: generation 11 ready \(2 workers/, 90_000);
  running = false;
  await Promise.all(loops);
  t.diagnostic(`${ok} requests served during ten HUPs`);
  assert.deepEqual(failures, []);
  assert.ok(ok > 0);
  assert.equal((await settle(tsgun.pid, 2, 'two workers of generation 11')).length, 2);
});

/**
 * The 16-worker app's boot wait, as a real app waits on a database or a cache: on a 2-core
 * machine booting node itself is CPU-bound, and four boots at once take the CPU from each other.
 */
const BOOT_MS = 3000;

/** Milliseconds from HUP to `Reload complete` of a server already serving. */
async function reloadTime(tsgun: Tsgun, generation: number): Promise<number> {
  const mark = tsgun.lines.length;
  const started = Date.now();
  tsgun.signal('SIGHUP');
  await tsgun.waitForLine(new RegExp(`^Reload complete: generation ${generation} ready`), 120_000, mark);
  return Date.now() - started;
}

test('a 16-worker reload with the default reload_batch takes well under 16 single-worker boots', async (t) => {
  const dir = appDir();
  const one = start(dir, ['-w', '1'], BOOT_MS);
  t.after(() => one.stop());
  await one.waitForLine(/^Ready: 1 workers serving/, 60_000);
  const single = await reloadTime(one, 2);
  await one.stop();

  const tsgun = start(dir, ['-w', '16'], BOOT_MS);
  t.after(() => tsgun.stop());
  await tsgun.waitForLine(/^Ready: 16 workers serving/, 90_000);
  const took = await reloadTime(tsgun, 2);
  t.diagnostic(
    `reload of 1 worker: ${(single / 1000).toFixed(1)} s; of 16 workers, default batch (4 at a time): ${(took / 1000).toFixed(1)} s`,
  );
  assert.ok(took < 16 * single * 0.6, `took ${took} ms; 16 single-worker reloads take ${16 * single} ms`);
});
