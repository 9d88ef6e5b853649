/**
 * Zero-downtime operations (DESIGN.md, "Signals" and "Draining without failed requests"),
 * with real processes, real signals and real HTTP: HUP reloads by generation (new code,
 * a broken config or app, a bind change, under load), TTIN/TTOU, WINCH, USR1, the USR2
 * upgrade to a new master, and max_requests restarts.
 *
 * The app is a copy of test/fixtures/reload/app.ts in a scratch directory, rewritten
 * between reloads; it answers `VERSION PID`.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  alive,
  appDir,
  bootedPids,
  childPidsSync,
  FIXTURES,
  freePort,
  linesSince,
  readIfExists,
  request,
  settle,
  sleep,
  titleOf,
  Tsgun,
  waitFor,
} from '../helpers.js';

const APP = 'app:app';
const APP_FIXTURE = path.join(FIXTURES, 'reload', 'app.ts');
const THROWING_APP = path.join(FIXTURES, 'broken', 'import-throws.ts');

// ---- the scratch app -------------------------------------------------------------------

/** Rewrite the scratch app so that it answers `VERSION PID`. */
function setVersion(dir: string, version: string): void {
  const source = readFileSync(APP_FIXTURE, 'utf8');
  const rewritten = source.replace("const VERSION = 'v1';", `const VERSION = '${version}';`);
  assert.ok(rewritten.includes(`const VERSION = '${version}';`), 'the fixture still declares VERSION');
  writeFileSync(path.join(dir, 'app.ts'), rewritten);
}

interface Answer {
  version: string;
  pid: number;
}

/** One request on a fresh connection; it must be a 200 from the reload app. */
async function hit(url: string, opts: { socketPath?: string } = {}): Promise<Answer> {
  const reply = await request(url, opts);
  assert.equal(reply.status, 200, reply.body);
  const m = /^(\S+) (\d+)$/.exec(reply.body);
  assert.ok(m, `unexpected body ${JSON.stringify(reply.body)}`);
  return { version: m[1]!, pid: Number(m[2]) };
}

// ---- processes and log lines -----------------------------------------------------------

/** Wait for the reload started after line `after` to finish; returns its generation. */
async function reloadComplete(t: Tsgun, after: number): Promise<number> {
  const line = await t.waitForLine(/^Reload complete: generation \d+ ready/, 30_000, after);
  return Number(/generation (\d+)/.exec(line.msg!)![1]);
}

function tryKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already.
  }
}

/** Masters started by USR2: not children of this process, so the helpers do not know them. */
const successors = new Set<number>();
process.on('exit', () => {
  for (const pid of successors) {
    for (const w of childPidsSync(pid)) tryKill(w, 'SIGKILL');
    tryKill(pid, 'SIGKILL');
  }
});

/** Stop a master that is not our child: TERM, then SIGKILL it and its workers if it lingers. */
async function stopDetached(pid: number): Promise<void> {
  if (alive(pid)) {
    const workers = childPidsSync(pid);
    tryKill(pid, 'SIGTERM');
    try {
      await waitFor(() => !alive(pid), `master ${pid} to exit`, 15_000);
    } catch {
      for (const w of [...workers, ...childPidsSync(pid)]) tryKill(w, 'SIGKILL');
      tryKill(pid, 'SIGKILL');
    }
  }
  successors.delete(pid);
}

/** Does a TCP connect to `port` succeed? */
function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

// ---- keep-alive load -------------------------------------------------------------------

interface LoadResult {
  ok: number;
  /** Every socket error, timeout or non-200, with the client and request number. */
  failures: string[];
  /** Requests sent on a reused keep-alive connection. */
  reused: number;
  /** Responses that announced `Connection: close` (a drain). */
  closes: number;
  versions: Map<string, number>;
}

function keepAliveGet(
  agent: http.Agent,
  url: URL,
): Promise<{ status: number; body: string; close: boolean; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ hostname: url.hostname, port: url.port, path: '/', agent, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, body, close: res.headers.connection === 'close', reused: req.reusedSocket }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 10 s')));
    req.on('error', reject);
  });
}

/**
 * `clients` concurrent clients, each with its own keep-alive agent (one connection at a
 * time), sending requests one after another until `more(client, sent)` says stop. Any
 * error or non-200 is a failed request; nothing is retried.
 */
async function keepAliveLoad(
  url: string,
  clients: number,
  more: (client: number, sent: number) => boolean,
  pauseMs: (client: number) => number = () => 0,
): Promise<LoadResult> {
  const target = new URL(url);
  const result: LoadResult = { ok: 0, failures: [], reused: 0, closes: 0, versions: new Map() };
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let sent = 0; more(client, sent); sent++) {
          try {
            const r = await keepAliveGet(agent, target);
            if (r.reused) result.reused++;
            if (r.close) result.closes++;
            if (r.status !== 200) {
              result.failures.push(`client ${client} request ${sent}: status ${r.status} ${r.body}`);
              continue;
            }
            result.ok++;
            const version = r.body.split(' ')[0]!;
            result.versions.set(version, (result.versions.get(version) ?? 0) + 1);
          } catch (err) {
            result.failures.push(
              `client ${client} request ${sent} at ${new Date().toISOString()}: ${(err as Error).message}`,
            );
          }
          const pause = pauseMs(client);
          if (pause > 0) await sleep(pause);
        }
      } finally {
        agent.destroy();
      }
    }),
  );
  return result;
}

// Two at a time: most of each test is waiting for workers to boot and drain.
describe('zero-downtime operations', { concurrency: 2 }, () => {
  // ---- HUP -------------------------------------------------------------------------------

  test('HUP replaces every worker and serves the new app code', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const before = await settle(t.pid, 2, 'first generation');
    const first = await hit(url);
    assert.equal(first.version, 'v1');
    assert.ok(before.includes(first.pid));

    setVersion(dir, 'v2');
    const mark = t.lines.length;
    t.signal('SIGHUP');
    await t.waitForLine(/^Reloading: starting generation 2 \(2 workers\)$/, 10_000, mark);
    assert.equal(await reloadComplete(t, mark), 2);

    const after = await settle(t.pid, 2, 'after the reload');
    assert.deepEqual(
      after.filter((p) => before.includes(p)),
      [],
      `no old worker is left (before ${before}, after ${after})`,
    );
    for (const pid of before) assert.ok(!alive(pid), `old worker ${pid} exited`);
    for (const pid of before)
      assert.equal(
        linesSince(t, mark, new RegExp(`^Retiring worker \\(pid:${pid}, generation 1\\): reload$`)).length,
        1,
        `old worker ${pid} was retired for the reload`,
      );
    for (let i = 0; i < 6; i++) {
      const answer = await hit(url);
      assert.equal(answer.version, 'v2', 'the new code serves');
      assert.ok(after.includes(answer.pid), `answered by a new worker (${answer.pid} in ${after})`);
    }
    assert.equal((await t.stop()).code, 0);
  });

  test('HUP with a broken YAML config keeps the old workers serving and names the file', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const conf = path.join(dir, 'tsgun.yaml');
    writeFileSync(conf, 'workers: 2\nbind:\n  - 127.0.0.1:0\n');
    const t = new Tsgun(['-c', conf, APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const before = await settle(t.pid, 2, 'first generation');
    setVersion(dir, 'v2');

    const broken: Array<[string, string, RegExp]> = [
      ['a YAML syntax error', 'workers: [2\nbind: {\n', /./],
      ['a wrong type', 'workers: many\nbind:\n  - 127.0.0.1:0\n', /workers/],
      ['a misspelt key', 'wrokers: 3\nbind:\n  - 127.0.0.1:0\n', /wrokers.*workers/],
    ];
    for (const [what, text, detail] of broken) {
      writeFileSync(conf, text);
      const mark = t.lines.length;
      t.signal('SIGHUP');
      const line = await t.waitForLine(/reload failed/, 10_000, mark);
      assert.match(line.msg!, /^Error: reload failed: /, what);
      assert.ok(line.msg!.includes(conf), `${what}: the error names ${conf}: ${line.msg}`);
      assert.match(line.msg!, detail, what);
      assert.match(line.msg!, /keep(s)? serving/, what);
      assert.equal(line.level, 'error', what);
      assert.deepEqual(linesSince(t, mark, /^Reloading: /), [], `${what}: no new generation was started`);
      assert.deepEqual(await settle(t.pid, 2, `after ${what}`), before, `${what}: the same workers`);
      const answer = await hit(url);
      assert.equal(answer.version, 'v1', `${what}: the old generation serves`);
      assert.ok(before.includes(answer.pid));
    }

    // The master is not stuck: a fixed config reloads.
    writeFileSync(conf, 'workers: 2\nbind:\n  - 127.0.0.1:0\n');
    const mark = t.lines.length;
    t.signal('SIGHUP');
    await reloadComplete(t, mark);
    const after = await settle(t.pid, 2, 'after the good reload');
    assert.deepEqual(
      after.filter((p) => before.includes(p)),
      [],
    );
    assert.equal((await hit(url)).version, 'v2');
    assert.equal((await t.stop()).code, 0);
  });

  test('HUP with a throwing .ts config or a throwing app keeps the old generation; fixing the app and HUP again succeeds', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const conf = path.join(dir, 'tsgun.conf.ts');
    const good = "export default { workers: 2, bind: ['127.0.0.1:0'] };\n";
    writeFileSync(conf, good);
    const t = new Tsgun(['-c', conf, APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const before = await settle(t.pid, 2, 'first generation');

    // A config file that throws while it is imported.
    writeFileSync(conf, `if (process.pid > 0) throw new Error('config exploded on purpose');\n${good}`);
    let mark = t.lines.length;
    t.signal('SIGHUP');
    let line = await t.waitForLine(/reload failed/, 10_000, mark);
    assert.match(line.msg!, /^Error: reload failed: /);
    assert.ok(line.msg!.includes(conf), `the error names ${conf}: ${line.msg}`);
    assert.match(line.msg!, /config exploded on purpose/);
    assert.deepEqual(await settle(t.pid, 2, 'after the broken config'), before);
    assert.equal((await hit(url)).version, 'v1');

    // An app that throws at import: the new generation fails to boot, the old one stays.
    writeFileSync(conf, good);
    writeFileSync(path.join(dir, 'app.ts'), readFileSync(THROWING_APP));
    mark = t.lines.length;
    t.signal('SIGHUP');
    line = await t.waitForLine(/reload failed/, 20_000, mark);
    assert.match(line.msg!, /^Error: reload failed: .*app import exploded on purpose.*; generation 1 keeps serving$/);
    assert.equal(line.level, 'error');
    assert.deepEqual(linesSince(t, mark, /^Reload complete/), []);
    assert.deepEqual(
      await settle(t.pid, 2, 'after the broken app'),
      before,
      'the old workers, and only they, are left',
    );
    for (let i = 0; i < 4; i++) {
      const answer = await hit(url);
      assert.equal(answer.version, 'v1');
      assert.ok(before.includes(answer.pid));
    }

    // Fixed: the next HUP succeeds.
    setVersion(dir, 'v3');
    mark = t.lines.length;
    t.signal('SIGHUP');
    await reloadComplete(t, mark);
    const after = await settle(t.pid, 2, 'after the fixed app');
    assert.deepEqual(
      after.filter((p) => before.includes(p)),
      [],
    );
    for (let i = 0; i < 4; i++) {
      const answer = await hit(url);
      assert.equal(answer.version, 'v3');
      assert.ok(after.includes(answer.pid));
    }
    assert.equal((await t.stop()).code, 0);
  });

  test("with a .ts config file the master's children are exactly its workers", async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const conf = path.join(dir, 'tsgun.conf.ts');
    writeFileSync(conf, "export default { workers: 2, bind: ['127.0.0.1:0'] };\n");
    const t = new Tsgun(['-c', conf, APP], { cwd: dir });
    ctx.after(async () => {
      await t.stop();
      t.kill();
    });
    await t.ready(2);
    const workers = await settle(t.pid, 2, 'start');
    const children = (): string[] => childPidsSync(t.pid).map((c) => `${c} ${titleOf(c)}`);
    assert.deepEqual(
      children(),
      workers.map((w) => `${w} ${titleOf(w)}`),
      'pgrep -P <master> lists exactly the workers',
    );
  });

  // ---- TTIN / TTOU / WINCH ---------------------------------------------------------------

  test('TTIN and TTOU change the worker count, never below 1; the count survives HUP unless the config changes workers', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const conf = path.join(dir, 'tsgun.yaml');
    writeFileSync(conf, 'workers: 2\nbind:\n  - 127.0.0.1:0\n');
    const t = new Tsgun(['-c', conf, APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    await settle(t.pid, 2, 'start');
    t.signal('SIGTTIN');
    await settle(t.pid, 3, 'after TTIN');
    t.signal('SIGTTOU');
    await settle(t.pid, 2, 'after TTOU');
    t.signal('SIGTTOU');
    const one = await settle(t.pid, 1, 'after the second TTOU');

    let mark = t.lines.length;
    t.signal('SIGTTOU');
    await t.waitForLine(/^TTOU ignored/, 10_000, mark);
    assert.deepEqual(await settle(t.pid, 1, 'after TTOU at one worker'), one, 'TTOU at one worker keeps that worker');
    assert.equal((await hit(url)).pid, one[0]);

    t.signal('SIGTTIN');
    await settle(t.pid, 2, 'after TTIN');
    t.signal('SIGTTIN');
    const three = await settle(t.pid, 3, 'after a second TTIN');

    // The config's `workers` is unchanged: the count set by TTIN survives the reload.
    mark = t.lines.length;
    t.signal('SIGHUP');
    await t.waitForLine(/^Reloading: starting generation 2 \(3 workers\)$/, 10_000, mark);
    await reloadComplete(t, mark);
    const reloaded = await settle(t.pid, 3, 'after HUP with the same config');
    assert.deepEqual(
      reloaded.filter((p) => three.includes(p)),
      [],
      'a new generation',
    );

    // The config's `workers` changed: the new value applies.
    writeFileSync(conf, 'workers: 1\nbind:\n  - 127.0.0.1:0\n');
    mark = t.lines.length;
    t.signal('SIGHUP');
    await t.waitForLine(/^Reloading: starting generation 3 \(1 workers?\)$/, 10_000, mark);
    await reloadComplete(t, mark);
    const [last] = await settle(t.pid, 1, 'after HUP with workers: 1');
    assert.equal((await hit(url)).pid, last);
    assert.equal((await t.stop()).code, 0);
  });

  test('WINCH stops every worker but keeps the master and its socket; TTIN answers a queued request, HUP restores the count', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const before = await settle(t.pid, 2, 'start');
    t.signal('SIGWINCH');
    await settle(t.pid, 0, 'after WINCH');
    for (const pid of before) assert.ok(!alive(pid), `worker ${pid} exited`);
    assert.ok(alive(t.pid), 'the master is alive');

    // No worker accepts, but the socket is still listening: the kernel queues the connection.
    let settled = false;
    const queued = request(url, { timeoutMs: 30_000 }).finally(() => (settled = true));
    queued.catch(() => undefined);
    await sleep(700);
    assert.equal(settled, false, 'nothing answers while there are no workers');
    assert.ok(alive(t.pid));

    const mark = t.lines.length;
    t.signal('SIGTTIN');
    const reply = await queued;
    assert.equal(reply.status, 200);
    const [worker] = await settle(t.pid, 1, 'after TTIN');
    assert.equal(reply.body, `v1 ${worker}`, 'the queued request was answered by the new worker');
    assert.equal(linesSince(t, mark, /^Booting worker/).length, 1);

    // WINCH again, then HUP: the configured count (2) is back.
    t.signal('SIGWINCH');
    await settle(t.pid, 0, 'after the second WINCH');
    t.signal('SIGHUP');
    const restored = await settle(t.pid, 2, 'after HUP');
    assert.ok(!restored.includes(worker!));
    assert.ok(restored.includes((await hit(url)).pid));
    assert.equal((await t.stop()).code, 0);
  });

  // ---- USR1 ------------------------------------------------------------------------------

  test('USR1 after the access log was renamed makes new requests go to a new file at the old path', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const access = path.join(dir, 'access.log');
    const t = new Tsgun(
      ['-w', '1', '-b', '127.0.0.1:0', '--access-logfile', access, '--access-logformat', '%(p)s %(r)s', APP],
      { cwd: dir },
    );
    ctx.after(() => t.kill());
    const url = await t.ready(1);
    const [worker] = await settle(t.pid, 1, 'start');
    for (let i = 0; i < 3; i++) await hit(url);
    await waitFor(() => readIfExists(access).split('\n').filter(Boolean).length >= 3, 'three access lines');
    renameSync(access, `${access}.1`);
    t.signal('SIGUSR1');

    // The worker reopens on its own schedule: ask until a request lands in the new file.
    for (let n = 0; !readIfExists(access).includes('GET /?after='); n++) {
      assert.ok(n < 100, `no new access log after USR1 (rotated file:\n${readIfExists(`${access}.1`)})`);
      await request(url, { path: `/?after=${n}` });
      await sleep(50);
    }
    const rotated = readIfExists(`${access}.1`);
    for (let i = 0; i < 5; i++) await request(url, { path: `/?late=${i}` });
    await waitFor(() => (readIfExists(access).match(/late=/g) ?? []).length === 5, 'five late lines in the new file');
    assert.equal(readIfExists(`${access}.1`), rotated, 'the rotated file gets nothing more');
    assert.match(readIfExists(access), new RegExp(`^<${worker}> GET /\\?late=0 HTTP/1\\.1$`, 'm'));
    assert.equal(
      (rotated.match(/^<\d+> GET \/ HTTP\/1\.1$/gm) ?? []).length,
      3,
      'the rotated file kept the first lines',
    );
    assert.deepEqual(await settle(t.pid, 1, 'after USR1'), [worker], 'USR1 does not restart workers');
    assert.equal((await t.stop()).code, 0);
  });

  // ---- USR2 ------------------------------------------------------------------------------

  test('USR2 starts a new master on the same sockets; TERM to the old one leaves the new one serving alone', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const pidfile = path.join(dir, 'tsgun.pid');
    const sock = path.join(dir, 'tsgun.sock');
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', '-b', `unix:${sock}`, '-p', pidfile, APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2, 2);
    const oldWorkers = await settle(t.pid, 2, 'old master');
    assert.equal(readIfExists(pidfile), `${t.pid}\n`);

    const mark = t.lines.length;
    t.signal('SIGUSR2');
    const upgrading = await t.waitForLine(/^Upgrading: started a new master \(pid \d+\)/, 10_000, mark);
    const successor = Number(/\(pid (\d+)\)/.exec(upgrading.msg!)![1]);
    successors.add(successor);
    ctx.after(() => stopDetached(successor));
    assert.equal(upgrading.pid, t.pid);
    assert.notEqual(successor, t.pid);

    // The new master binds nothing new: it inherits both sockets and boots its own workers.
    const newWorkers = await settle(successor, 2, 'new master');
    await waitFor(() => newWorkers.every((p) => bootedPids(t).includes(p)), 'the new workers to boot');
    const newListening = linesSince(t, mark, /^Listening at: /)
      .filter((l) => l.pid === successor)
      .map((l) => l.msg);
    assert.deepEqual(newListening, [
      `Listening at: ${url} (${successor})`,
      `Listening at: unix:${sock} (${successor})`,
    ]);
    assert.equal(readIfExists(pidfile), `${successor}\n`, 'the pidfile names the new master');
    assert.equal(readIfExists(`${pidfile}.oldbin`), `${t.pid}\n`, 'PIDFILE.oldbin names the old master');
    assert.deepEqual(
      await settle(t.pid, 2, 'old master during the upgrade'),
      oldWorkers,
      'the old master keeps its workers',
    );
    // Started by the old master (as Gunicorn's re-exec is), the new master is its child until the old one exits.
    assert.deepEqual(
      childPidsSync(t.pid),
      [...oldWorkers, successor].sort((x, y) => x - y),
    );

    // Both masters' workers accept on the same port.
    const seen = new Set<number>();
    for (let i = 0; i < 300 && !newWorkers.some((p) => seen.has(p)); i++) seen.add((await hit(url)).pid);
    assert.ok(
      newWorkers.some((p) => seen.has(p)),
      `a new master's worker answered on ${url} (saw ${[...seen]})`,
    );
    for (const pid of seen) assert.ok([...oldWorkers, ...newWorkers].includes(pid));

    // A second upgrade from the new master is refused while the old one is alive.
    const before = t.lines.length;
    process.kill(successor, 'SIGUSR2');
    const refused = await t.waitForLine(/^USR2 ignored/, 10_000, before);
    assert.equal(refused.pid, successor);
    assert.match(refused.msg!, new RegExp(`pid ${t.pid}`));
    await sleep(300);
    assert.deepEqual(linesSince(t, before, /^Upgrading: /), []);
    assert.equal(readIfExists(pidfile), `${successor}\n`);

    // TERM to the old master: it exits 0 and the new one serves alone, on both sockets.
    const { code } = await t.stop();
    assert.equal(code, 0);
    for (const pid of oldWorkers) assert.ok(!alive(pid), `old worker ${pid} exited`);
    assert.ok(alive(successor), 'the new master outlives the old one');
    assert.equal(readIfExists(`${pidfile}.oldbin`), '', 'PIDFILE.oldbin is removed with the old master');
    assert.equal(readIfExists(pidfile), `${successor}\n`);
    assert.ok(existsSync(sock), 'the unix socket file outlives the old master');
    assert.deepEqual(childPidsSync(successor), newWorkers);
    for (let i = 0; i < 8; i++) {
      assert.ok(newWorkers.includes((await hit(url)).pid), 'TCP answered by the new master');
      assert.ok(
        newWorkers.includes((await hit(url, { socketPath: sock })).pid),
        'unix socket answered by the new master',
      );
    }

    // TERM to the new master removes the socket file and the pidfile.
    const stopping = t.lines.length;
    await stopDetached(successor);
    await waitFor(
      () => linesSince(t, stopping, /^Shutting down: Master$/).some((l) => l.pid === successor),
      'the new master to log its shutdown',
      5000,
    );
    for (const pid of newWorkers) assert.ok(!alive(pid), `new worker ${pid} exited`);
    assert.ok(!existsSync(sock), 'the last master removes the unix socket file');
    assert.ok(!existsSync(pidfile), 'the pidfile is removed');
  });

  // ---- max_requests ----------------------------------------------------------------------

  test('--max-requests 50 replaces workers under keep-alive load without failing a request', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', '--max-requests', '50', '--max-requests-jitter', '5', APP], {
      cwd: dir,
    });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const before = await settle(t.pid, 2, 'start');
    // 6 clients, 50 requests each, and on until two workers that reached their limit
    // have drained and exited while the load ran. Short pauses (well under the 1 s idle
    // grace) mean some drains find a connection between two requests.
    const drained = (): number =>
      t
        .grep(/^Retiring worker \(pid:\d+, generation \d+\): max-requests$/)
        .filter((l) => !alive(Number(/pid:(\d+)/.exec(l.msg!)![1]))).length;
    const loadStart = Date.now();
    const load = await keepAliveLoad(
      url,
      6,
      (_, sent) => sent < 50 || (drained() < 2 && sent < 400),
      () => 20 + Math.floor(Math.random() * 30),
    );
    const loadEnd = Date.now();
    assert.deepEqual(load.failures, [], `failed requests:\n${load.failures.join('\n')}\n--- log ---\n${t.stderr}`);
    assert.ok(load.ok >= 300, `${load.ok} requests`);
    assert.ok(load.reused > load.ok / 2, `keep-alive connections were reused (${load.reused} of ${load.ok})`);

    // Each worker that reached its limit is retired for it, once its replacement is ready, and exits.
    const restarts = t.grep(/^Autorestarting worker after current request \(served \d+\)\.$/);
    assert.ok(restarts.length >= 2, `at least two max-requests restarts (got ${restarts.length})\n${t.stderr}`);
    const restarted = restarts.map((l) => l.pid!);
    await waitFor(() => restarted.every((p) => !alive(p)), 'the restarted workers to exit');
    for (const line of restarts) {
      const served = Number(/served (\d+)/.exec(line.msg!)![1]);
      assert.ok(served >= 50 && served <= 55, `restart after max_requests + jitter requests (${served})`);
      assert.equal(
        t.grep(new RegExp(`^Retiring worker \\(pid:${line.pid}, generation \\d+\\): max-requests$`)).length,
        1,
        `the master retired ${line.pid} for max-requests`,
      );
    }
    assert.ok(
      load.closes > 0,
      `a drained worker answered with Connection: close (${load.ok} requests, load from ${loadStart} to ${loadEnd})\n${t.stderr}`,
    );
    const after = await settle(t.pid, 2, 'after the load');
    assert.ok(
      after.some((p) => !before.includes(p)),
      `new worker pids (before ${before}, after ${after})`,
    );
    for (const pid of after) assert.ok(!restarted.includes(pid));
    assert.equal((await t.stop()).code, 0);
  });

  // ---- HUP under load --------------------------------------------------------------------

  test('three HUPs under continuous keep-alive load fail no request and leave only the newest generation', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const t = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    const first = await settle(t.pid, 2, 'start');
    const start = Date.now();
    const mark = t.lines.length;
    const running = keepAliveLoad(
      url,
      4,
      () => Date.now() - start < 6000,
      // Two clients back to back, two with pauses that leave their connection idle for a moment.
      (client) => (client < 2 ? 0 : Math.floor(Math.random() * 60)),
    );
    for (const [at, version] of [
      [1000, 'v2'],
      [2500, 'v3'],
      [4000, 'v4'],
    ] as const) {
      await sleep(at - (Date.now() - start));
      setVersion(dir, version);
      t.signal('SIGHUP');
    }
    const load = await running;
    assert.deepEqual(load.failures, [], `failed requests:\n${load.failures.join('\n')}\n--- log ---\n${t.stderr}`);
    assert.ok(load.ok > 200, `the load ran (${load.ok} requests)`);
    assert.ok(load.reused > load.ok / 2, `keep-alive connections were reused (${load.reused} of ${load.ok})`);

    // HUPs during a reload are queued, so there are two or three reloads; the last one
    // read the app as the last HUP left it.
    const newest = await waitFor(
      () => {
        const since = t.lines.slice(mark);
        const last = (re: RegExp): number => since.findLastIndex((l) => re.test(l.msg ?? ''));
        if (since.filter((l) => l.msg === 'Handling signal: hup').length < 3) return null;
        const started = last(/^Reloading: starting generation \d+/);
        // A HUP queued after the last reload started is still to come.
        if (started < 0 || last(/^Reload already in progress/) > started) return null;
        const gen = Number(/generation (\d+)/.exec(since[started]!.msg!)![1]);
        return last(new RegExp(`^Reload complete: generation ${gen} ready`)) > started ? gen : null;
      },
      'the newest generation to be ready',
      30_000,
    );
    assert.ok(newest >= 3, `at least two reloads ran (newest generation ${newest})`);
    const finalWorkers = await settle(t.pid, 2, 'after the reloads');
    assert.deepEqual(
      finalWorkers.filter((p) => first.includes(p)),
      [],
    );
    for (let i = 0; i < 10; i++) {
      const answer = await hit(url);
      assert.equal(answer.version, 'v4', 'the code of the last HUP serves');
      assert.ok(finalWorkers.includes(answer.pid));
    }

    // On stop the master names each worker's generation: all are the newest.
    const stopping = t.lines.length;
    assert.equal((await t.stop()).code, 0);
    const retired = linesSince(t, stopping, /^Retiring worker \(pid:\d+, generation \d+\): shutdown$/).map((l) =>
      /pid:(\d+), generation (\d+)/.exec(l.msg!)!,
    );
    assert.deepEqual(
      retired.map((m) => Number(m[1])).sort((a, b) => a - b),
      finalWorkers,
    );
    assert.deepEqual(
      retired.map((m) => Number(m[2])),
      [newest, newest],
    );
  });

  // ---- bind change on HUP ----------------------------------------------------------------

  test('HUP after a bind is added to the config listens there too, and stops listening once it is removed', async (ctx) => {
    const dir = appDir(APP_FIXTURE);
    const conf = path.join(dir, 'tsgun.yaml');
    writeFileSync(conf, 'workers: 1\nbind:\n  - 127.0.0.1:0\n');
    const t = new Tsgun(['-c', conf, APP], { cwd: dir });
    ctx.after(() => t.kill());
    const a = await t.ready(1);
    const port = await freePort();
    const b = `http://127.0.0.1:${port}`;
    assert.equal(await connects(port), false);

    writeFileSync(conf, `workers: 1\nbind:\n  - 127.0.0.1:0\n  - 127.0.0.1:${port}\n`);
    let mark = t.lines.length;
    t.signal('SIGHUP');
    await t.waitForLine(new RegExp(`^Listening at: ${b.replace(/\./g, '\\.')} \\(${t.pid}\\)$`), 10_000, mark);
    await reloadComplete(t, mark);
    assert.deepEqual(
      linesSince(t, mark, /^Listening at: /).map((l) => l.msg),
      [`Listening at: ${b} (${t.pid})`],
      'only the new address is announced',
    );
    const [worker] = await settle(t.pid, 1, 'after adding a bind');
    assert.deepEqual(await hit(b), { version: 'v1', pid: worker }, 'the new address serves');
    assert.deepEqual(await hit(a), { version: 'v1', pid: worker }, 'the old address still serves');

    writeFileSync(conf, 'workers: 1\nbind:\n  - 127.0.0.1:0\n');
    mark = t.lines.length;
    t.signal('SIGHUP');
    await reloadComplete(t, mark);
    await settle(t.pid, 1, 'after removing the bind');
    let listening = true;
    for (const deadline = Date.now() + 10_000; listening && Date.now() < deadline; await sleep(100))
      listening = await connects(port);
    assert.equal(listening, false, `${b} no longer accepts connections`);
    assert.equal((await hit(a)).version, 'v1');
    assert.equal((await t.stop()).code, 0);
  });
});
