/**
 * Config files, implicit discovery, precedence (defaults < file < env < command line),
 * hooks, raw_env and chdir: checked by `--print-config` and by what a real master does.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { describePids, FIXTURES, request, ROOT, runTsgun, scratchDir, Tsgun, workerPidsByTitle } from '../helpers.js';

const APP = 'env-app:app';
const CONFIGS = path.join(FIXTURES, 'configs');

interface EnvReply {
  pid: number;
  ppid: number;
  cwd: string;
  env: { GREETING: string | null; EQUATION: string | null; FROM_FILE: string | null };
}

async function envReply(url: string): Promise<EnvReply> {
  const reply = await request(url);
  assert.equal(reply.status, 200, reply.body);
  return JSON.parse(reply.body) as EnvReply;
}

/** `--print-config` output as setting -> { value, source }. */
async function printConfig(
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Map<string, { value: string; source: string }>> {
  const r = await runTsgun(['--print-config', ...args], opts);
  assert.equal(r.code, 0, r.stderr);
  const out = new Map<string, { value: string; source: string }>();
  for (const line of r.stdout.split('\n')) {
    const m = /^(\w+)\s+= (.*) {2}\(([^)]*)\)$/.exec(line);
    if (m) out.set(m[1]!, { value: m[2]!, source: m[3]! });
  }
  assert.ok(out.has('workers') && out.has('bind'), `unexpected --print-config output:\n${r.stdout}`);
  return out;
}

function expectSetting(
  config: Map<string, { value: string; source: string }>,
  name: string,
  value: string,
  source: string,
): void {
  assert.deepEqual(config.get(name), { value, source }, `setting ${name}`);
}

async function stopClean(t: Tsgun): Promise<void> {
  const { code } = await t.stop();
  assert.equal(code, 0, `tsgun exited with ${code}\n${t.stderr}`);
}

/** The process title a worker runs under, from /proc. */
function titleOf(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!.trim();
}

/** The master's worker processes (see workerPidsByTitle). */
async function workersOf(t: Tsgun): Promise<number[]> {
  return workerPidsByTitle(t.pid);
}

/** `count` distinct TCP ports that were free a moment ago. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '0.0.0.0', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

describe('config files', () => {
  for (const ext of ['ts', 'yaml', 'json', 'mjs', 'cjs']) {
    test(`a .${ext} config file is loaded and applied`, async (ctx) => {
      const file = path.join(CONFIGS, `conf.${ext}`);
      const config = await printConfig(['-c', `configs/conf.${ext}`, APP]);
      expectSetting(config, 'workers', '2', `file ${file}`);
      expectSetting(config, 'bind', '["127.0.0.1:0"]', `file ${file}`);
      expectSetting(config, 'raw_env', `["FROM_FILE=${ext}"]`, `file ${file}`);
      expectSetting(config, 'proc_name', `"conf-${ext}"`, `file ${file}`);
      expectSetting(config, 'timeout', '30', 'default');

      const t = new Tsgun(['-c', `configs/conf.${ext}`, APP]);
      ctx.after(() => t.kill());
      const url = await t.ready(2);
      const workers = await workersOf(t);
      assert.equal(workers.length, 2);
      const seen = await envReply(url);
      assert.ok(workers.includes(seen.pid));
      assert.equal(seen.env.FROM_FILE, ext);
      assert.equal(titleOf(t.pid), `tsgun: master [conf-${ext}]`);
      for (const pid of workers) assert.equal(titleOf(pid), `tsgun: worker [conf-${ext}]`);
      await stopClean(t);
    });
  }

  test('a .ts config imports defineConfig from the package itself (self-reference)', () => {
    // conf.ts and hooks.conf.ts say `import { defineConfig } from 'tsgun'`: the test above
    // loading conf.ts proves it resolves; this guards against the import being dropped.
    assert.match(readFileSync(path.join(CONFIGS, 'conf.ts'), 'utf8'), /from 'tsgun'/);
  });

  test("once workers run, the master's only children are its workers", async (ctx) => {
    const dir = realpathSync(scratchDir());
    // A config no compile cache can hold yet (a compiler service left running would show).
    const file = path.join(dir, 'fresh.conf.ts');
    writeFileSync(
      file,
      `const stamp: string = ${JSON.stringify(`${process.pid}-${Date.now()}-${Math.random()}`)};\nexport default { workers: 1, bind: ['127.0.0.1:0'], proc_name: \`fresh \${stamp.length}\` };\n`,
    );
    // Helper programs live a few milliseconds; this getconf lives long enough to be seen.
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    const real =
      (process.env.PATH ?? '')
        .split(':')
        .map((d) => path.join(d, 'getconf'))
        .find((f) => existsSync(f)) ?? 'false';
    writeFileSync(path.join(bin, 'getconf'), `#!/bin/sh\nsleep 0.5\nexec ${real} "$@"\n`, { mode: 0o755 });
    const t = new Tsgun(['-c', file, '--stats-interval', '0.5', APP], {
      env: { PATH: `${bin}:${process.env.PATH ?? ''}` },
    });
    ctx.after(() => t.kill());
    // `pgrep -P <master>` lists exactly the workers (DESIGN.md, "Processes"): watch from
    // the first worker's spawn until a few stats samples after it is ready.
    const strangers = new Set<string>();
    let readyAt = 0;
    void t.ready(1).then(
      () => (readyAt = Date.now()),
      () => {},
    );
    while (readyAt === 0 || Date.now() < readyAt + 1500) {
      if (t.proc.exitCode !== null) break;
      const workers = new Set(await workersOf(t));
      if (workers.size > 0)
        for (const pid of await t.workerPids()) if (!workers.has(pid)) strangers.add(describePids([pid]));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await t.ready(1);
    assert.deepEqual([...strangers], [], 'the master had children that are not workers');
    await stopClean(t);
  });

  test('./tsgun.conf.yaml is used when -c is absent', async (ctx) => {
    const dir = realpathSync(scratchDir());
    const file = path.join(dir, 'tsgun.conf.yaml');
    writeFileSync(
      file,
      `workers: 2\nbind: 127.0.0.1:0\nchdir: ${JSON.stringify(FIXTURES)}\nraw_env: [FROM_FILE=implicit]\n`,
    );
    const config = await printConfig([APP], { cwd: dir });
    expectSetting(config, 'workers', '2', `file ${file}`);
    expectSetting(config, 'config', JSON.stringify(file), config.get('config')!.source);

    const t = new Tsgun([APP], { cwd: dir });
    ctx.after(() => t.kill());
    const url = await t.ready(2);
    assert.equal((await workersOf(t)).length, 2);
    const seen = await envReply(url);
    assert.equal(seen.env.FROM_FILE, 'implicit');
    assert.equal(seen.cwd, FIXTURES);
    await stopClean(t);
  });

  test('./tsgun.conf.ts is preferred to ./tsgun.conf.yaml, and -c overrides both', async () => {
    const dir = realpathSync(scratchDir());
    writeFileSync(path.join(dir, 'tsgun.conf.ts'), 'const workers: number = 3;\nexport default { workers };\n');
    writeFileSync(path.join(dir, 'tsgun.conf.yaml'), 'workers: 4\n');
    writeFileSync(path.join(dir, 'other.json'), '{ "workers": 5 }\n');
    expectSetting(await printConfig([APP], { cwd: dir }), 'workers', '3', `file ${path.join(dir, 'tsgun.conf.ts')}`);
    expectSetting(
      await printConfig(['-c', 'other.json', APP], { cwd: dir }),
      'workers',
      '5',
      `file ${path.join(dir, 'other.json')}`,
    );
  });
});

describe('precedence: defaults < config file < env < command line', () => {
  test('--print-config shows each layer winning over the one below, with its source', async () => {
    const dir = realpathSync(scratchDir());
    const file = path.join(dir, 'conf.json');
    writeFileSync(file, JSON.stringify({ workers: 3, bind: ['127.0.0.1:8101'], keepalive: 7 }));
    const noFile = await printConfig([APP], { cwd: dir });
    expectSetting(noFile, 'workers', '1', 'default');
    expectSetting(noFile, 'bind', '["127.0.0.1:8000"]', 'default');

    const fromFile = await printConfig(['-c', file, APP]);
    expectSetting(fromFile, 'workers', '3', `file ${file}`);
    expectSetting(fromFile, 'bind', '["127.0.0.1:8101"]', `file ${file}`);

    const env = { WEB_CONCURRENCY: '2', PORT: '8102' };
    const fromEnv = await printConfig(['-c', file, APP], { env });
    expectSetting(fromEnv, 'workers', '2', 'env WEB_CONCURRENCY');
    expectSetting(fromEnv, 'bind', '["0.0.0.0:8102"]', 'env PORT');
    expectSetting(fromEnv, 'keepalive', '7', `file ${file}`);

    const cmdArgs = { ...env, TSGUN_CMD_ARGS: '-w 3 -b 127.0.0.1:8103 --keep-alive 9' };
    const fromCmdArgs = await printConfig(['-c', file, APP], { env: cmdArgs });
    expectSetting(fromCmdArgs, 'workers', '3', 'env TSGUN_CMD_ARGS');
    expectSetting(fromCmdArgs, 'bind', '["127.0.0.1:8103"]', 'env TSGUN_CMD_ARGS');
    expectSetting(fromCmdArgs, 'keepalive', '9', 'env TSGUN_CMD_ARGS');

    const fromCli = await printConfig(['-c', file, '-w', '1', '-b', '127.0.0.1:8104', APP], { env: cmdArgs });
    expectSetting(fromCli, 'workers', '1', 'command line');
    expectSetting(fromCli, 'bind', '["127.0.0.1:8104"]', 'command line');
    // A setting the command line leaves alone keeps the highest layer that set it.
    expectSetting(fromCli, 'keepalive', '9', 'env TSGUN_CMD_ARGS');
  });

  test('the running master has the winning worker count and port at each layer', async (ctx) => {
    const dir = realpathSync(scratchDir());
    const [p1, p2, p3, p4] = await freePorts(4);
    const file = path.join(dir, 'conf.json');
    writeFileSync(file, JSON.stringify({ workers: 2, bind: [`127.0.0.1:${p1}`] }));
    // Each layer's worker count differs from the layer below it: 2, 1, 2, 1.
    const env = { WEB_CONCURRENCY: '1', PORT: String(p2) };
    const cmdArgs = { ...env, TSGUN_CMD_ARGS: `-w 2 -b 127.0.0.1:${p3}` };
    const layers: Array<{ name: string; args: string[]; env: NodeJS.ProcessEnv; workers: number; listening: string }> =
      [
        { name: 'config file', args: [], env: {}, workers: 2, listening: `http://127.0.0.1:${p1}` },
        { name: 'WEB_CONCURRENCY and PORT', args: [], env, workers: 1, listening: `http://0.0.0.0:${p2}` },
        { name: 'TSGUN_CMD_ARGS', args: [], env: cmdArgs, workers: 2, listening: `http://127.0.0.1:${p3}` },
        {
          name: 'command line',
          args: ['-w', '1', '-b', `127.0.0.1:${p4}`],
          env: cmdArgs,
          workers: 1,
          listening: `http://127.0.0.1:${p4}`,
        },
      ];
    for (const layer of layers) {
      const t = new Tsgun(['-c', file, ...layer.args, APP], { env: layer.env });
      ctx.after(() => t.kill());
      const url = await t.ready(layer.workers);
      assert.equal(url, layer.listening, `${layer.name}: listening`);
      assert.equal(t.grep(/^Listening at: /).length, 1, `${layer.name}: one socket`);
      // Let any surplus worker show up before counting.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const workers = await workersOf(t);
      assert.equal(workers.length, layer.workers, `${layer.name}: workers running`);
      const seen = await envReply(`http://127.0.0.1:${new URL(url).port}`);
      assert.ok(workers.includes(seen.pid), `${layer.name}: served by a worker`);
      await stopClean(t);
    }
  });
});

describe('hooks from a config file', () => {
  interface HookRecord {
    hook: string;
    pid: number;
    ppid: number;
    serverPid?: number;
    workerId?: number;
    workerPid?: number;
    value?: number;
    old?: number | null;
    url?: string;
    status?: number;
  }

  test('master hooks run in the master, worker hooks in the workers, in order', async (ctx) => {
    const log = path.join(scratchDir(), 'hooks.jsonl');
    const t = new Tsgun(['-c', 'configs/hooks.conf.ts', APP], { env: { HOOK_LOG: log } });
    ctx.after(() => t.kill());
    let master = 0;
    let workers: number[] = [];
    const url = await t.ready(2);
    master = t.pid;
    workers = await workersOf(t);
    assert.equal(workers.length, 2, `expected 2 workers, found ${describePids(workers)}\n--- stderr ---\n${t.stderr}`);
    const seen = await envReply(url);
    assert.ok(workers.includes(seen.pid));
    await stopClean(t);
    const records = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as HookRecord);
    try {
      checkHookRecords(records, master, workers);
    } catch (err) {
      (err as Error).message +=
        `\nmaster ${master}, workers ${workers.join(', ')}; hook records:\n${records.map((r) => JSON.stringify(r)).join('\n')}\n--- stderr ---\n${t.stderr}`;
      throw err;
    }
  });

  function checkHookRecords(records: HookRecord[], master: number, workers: number[]): void {
    const named = (hook: string): HookRecord[] => records.filter((r) => r.hook === hook);
    const index = (r: HookRecord): number => records.indexOf(r);

    for (const hook of ['on_starting', 'when_ready', 'nworkers_changed', 'on_exit']) {
      const [r, ...more] = named(hook);
      assert.ok(r, `${hook} did not run`);
      assert.equal(more.length, 0, `${hook} ran more than once`);
      assert.equal(r.pid, master, `${hook} ran outside the master`);
      assert.equal(r.serverPid, master);
    }
    assert.deepEqual([named('nworkers_changed')[0]!.value, named('nworkers_changed')[0]!.old], [2, null]);

    const preFork = named('pre_fork');
    assert.deepEqual(
      preFork.map((r) => r.pid),
      [master, master],
    );
    assert.deepEqual(preFork.map((r) => r.workerId).sort(), [1, 2]);

    const postFork = named('post_fork');
    assert.deepEqual(
      postFork.map((r) => r.pid).sort((a, b) => a - b),
      workers,
      'post_fork did not run once in each worker',
    );
    for (const r of postFork) {
      assert.equal(r.ppid, master);
      assert.equal(r.serverPid, master);
      assert.equal(r.workerPid, r.pid);
    }
    const init = named('post_worker_init');
    assert.deepEqual(
      init.map((r) => r.pid).sort((a, b) => a - b),
      workers,
      'post_worker_init did not run once in each worker',
    );
    for (const r of init) {
      assert.equal(r.workerPid, r.pid);
      const fork = postFork.find((f) => f.pid === r.pid)!;
      assert.equal(fork.workerId, r.workerId);
      assert.ok(index(fork) < index(r), 'post_worker_init ran before post_fork');
    }

    const [pre] = named('pre_request');
    const [post] = named('post_request');
    assert.ok(pre && post, 'request hooks did not run');
    assert.ok(workers.includes(pre.pid) && post.pid === pre.pid);
    assert.equal(post.status, 200);

    const childExits = named('child_exit');
    assert.deepEqual(
      childExits.map((r) => r.pid),
      [master, master],
      'child_exit did not run in the master once per worker',
    );
    assert.deepEqual(
      childExits.map((r) => r.workerPid ?? 0).sort((a, b) => a - b),
      workers,
    );
    // As in Gunicorn, worker_exit runs in the exiting worker itself.
    const workerExits = named('worker_exit');
    assert.deepEqual(
      workerExits.map((r) => r.pid).sort((a, b) => a - b),
      workers,
      'worker_exit did not run once in each worker',
    );
    for (const r of workerExits) assert.deepEqual([r.workerPid, r.serverPid], [r.pid, master]);

    const order = (hook: string): number => records.findIndex((r) => r.hook === hook);
    assert.ok(order('on_starting') < order('when_ready'), 'on_starting after when_ready');
    assert.ok(order('when_ready') < order('pre_fork'), 'when_ready after pre_fork');
    assert.ok(order('pre_fork') < order('post_fork'), 'pre_fork after post_fork');
    assert.equal(records.at(-1)!.hook, 'on_exit', 'on_exit was not the last hook');
  }
});

describe('raw_env and chdir', () => {
  test('-e KEY=VALUE is visible to the app and wins over the inherited environment', async (ctx) => {
    const t = new Tsgun(['-b', '127.0.0.1:0', '-e', 'GREETING=hello', '-e', 'EQUATION=a=b=c', APP], {
      env: { GREETING: 'inherited' },
    });
    ctx.after(() => t.kill());
    const url = await t.ready(1);
    const workers = await workersOf(t);
    const seen = await envReply(url);
    assert.ok(workers.includes(seen.pid));
    assert.deepEqual(seen.env, { GREETING: 'hello', EQUATION: 'a=b=c', FROM_FILE: null });
    await stopClean(t);
  });

  test('--chdir DIR: the app is found in DIR and runs there', async (ctx) => {
    const elsewhere = realpathSync(scratchDir());
    const t = new Tsgun(['-b', '127.0.0.1:0', '--chdir', FIXTURES, APP], { cwd: elsewhere });
    ctx.after(() => t.kill());
    const url = await t.ready(1);
    const seen = await envReply(url);
    assert.equal(seen.cwd, FIXTURES);
    await stopClean(t);
  });

  test('a relative --chdir is resolved against the current directory', async (ctx) => {
    const t = new Tsgun(['-b', '127.0.0.1:0', '--chdir', 'test/fixtures', APP], { cwd: ROOT });
    ctx.after(() => t.kill());
    const url = await t.ready(1);
    assert.equal((await envReply(url)).cwd, FIXTURES);
    await stopClean(t);
  });

  test('without --chdir the app module is not found outside its directory', async () => {
    const r = await runTsgun(['-b', '127.0.0.1:0', APP], { cwd: realpathSync(scratchDir()) });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^Error: cannot find app module "env-app"/m);
  });
});
