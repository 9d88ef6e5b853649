/**
 * TypeScript apps compiled by tsx: one worker compiles the app and the others load what it
 * compiled; and no esbuild process stays in the workers, not once they are ready, and not after
 * a request that compiled a module the boot did not load. The compile cache is cold (tsx keeps
 * it under the temporary directory), so esbuild does compile.
 */
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import {
  childPidsSync,
  readIfExists,
  request,
  scratchDir,
  settle,
  titleOf,
  Tsgun,
  waitFor,
  workerPidsByTitle,
} from '../helpers.js';

/** The esbuild binary that esbuild's JavaScript API runs on this machine. */
function esbuildBinary(): string {
  const esbuild = createRequire(createRequire(import.meta.url).resolve('tsx')).resolve('esbuild');
  return createRequire(esbuild).resolve(`@esbuild/${process.platform}-${process.arch}/bin/esbuild`);
}

/**
 * An esbuild that notes which process ran it (its parent's pid, one line per run) and then
 * is the real one: esbuild's JavaScript API runs ESBUILD_BINARY_PATH, for its one-shot
 * synchronous compiles and for its service alike. It starts a second late, as on a busy
 * machine: workers that boot together then all miss the cache, where a fast compile could
 * fill it before the last of them looked.
 */
function recordingEsbuild(dir: string): { binary: string; runBy: () => number[] } {
  const binary = path.join(dir, 'esbuild');
  const log = path.join(dir, 'ran-by');
  writeFileSync(binary, `#!/bin/sh\necho "$PPID" >> '${log}'\nsleep 1\nexec '${esbuildBinary()}' "$@"\n`);
  chmodSync(binary, 0o755);
  return { binary, runBy: () => [...new Set(readIfExists(log).split('\n').filter(Boolean).map(Number))] };
}

for (const [kind, app] of [
  ['an ES module', 'typescript/esm-app.ts:app'],
  ['CommonJS (.cts)', 'typescript/cjs-app.cts:app'],
] as const) {
  test(`a TypeScript app (${kind}) served by 3 workers is compiled by one of them, on a cold compile cache`, async (t) => {
    const dir = scratchDir('tsgun-compile-once-');
    const esbuild = recordingEsbuild(dir);
    // No config file: the master would compile a TypeScript one with esbuild itself.
    const s = new Tsgun(['-w', '3', '-b', '127.0.0.1:0', app], {
      env: { TMPDIR: dir, ESBUILD_BINARY_PATH: esbuild.binary },
    });
    t.after(() => s.stop());
    const url = await s.ready(3);
    const workers = workerPidsByTitle(s.pid);
    assert.equal(workers.length, 3);
    const compilers = esbuild.runBy();
    assert.equal(
      compilers.length,
      1,
      `esbuild ran in one process, not in each worker: ${compilers.join(', ')} (workers ${workers.join(', ')})`,
    );
    assert.ok(
      workers.includes(compilers[0]!),
      `the worker that compiled (${compilers[0]}) serves (workers ${workers.join(', ')})`,
    );

    const answered = new Set<number>();
    await waitFor(
      async () => {
        const reply = await request(url);
        assert.equal(reply.status, 200, reply.body);
        const [body, pid] = reply.body.split(' ');
        assert.equal(body, 'hello');
        answered.add(Number(pid));
        return answered.size === 3;
      },
      'all 3 workers to answer',
      20_000,
    );
  });
}

test('after a HUP with changed TypeScript, one worker of the new generation compiles it', async (t) => {
  const dir = scratchDir('tsgun-compile-once-');
  const esbuild = recordingEsbuild(dir);
  const source = (greeting: string): string =>
    `import type { IncomingMessage, ServerResponse } from 'node:http';\n` +
    `const GREETING: string = '${greeting}';\n` +
    `export const app = (_req: IncomingMessage, res: ServerResponse): void => void res.end(\`\${GREETING} \${process.pid}\`);\n`;
  writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  writeFileSync(path.join(dir, 'main.ts'), source('one'));
  // The whole new generation may boot at once: each of its workers would compile main.ts.
  const s = new Tsgun(['-w', '3', '--reload-batch', '3', '-b', '127.0.0.1:0', 'main:app'], {
    cwd: dir,
    env: { TMPDIR: dir, ESBUILD_BINARY_PATH: esbuild.binary },
  });
  t.after(() => s.stop());
  const url = await s.ready(3);
  assert.equal(esbuild.runBy().length, 1, 'generation 1: one worker compiled');

  writeFileSync(path.join(dir, 'ran-by'), '');
  writeFileSync(path.join(dir, 'main.ts'), source('two'));
  const mark = s.lines.length;
  s.signal('SIGHUP');
  await s.waitForLine(/^Reload complete: generation 2 ready \(3 workers/, 60_000, mark);
  const workers = await settle(s.pid, 3, 'generation 2 alone');
  const compilers = esbuild.runBy();
  assert.equal(
    compilers.length,
    1,
    `esbuild ran in one worker of generation 2: ${compilers.join(', ')} (workers ${workers.join(', ')})`,
  );
  assert.ok(workers.includes(compilers[0]!));
  const reply = await request(url);
  assert.match(reply.body, /^two \d+$/);
});

/** Every descendant of `pid`, with its command line. */
function descendants(pid: number): Array<{ pid: number; command: string }> {
  return childPidsSync(pid).flatMap((child) => [{ pid: child, command: titleOf(child) }, ...descendants(child)]);
}

function esbuildUnder(workers: number[]): Array<{ pid: number; command: string }> {
  return workers.flatMap(descendants).filter((p) => /esbuild/.test(p.command));
}

/** Wait (a few seconds at most) until no esbuild process is left under the workers. */
async function expectNoEsbuild(workers: number[], when: string): Promise<void> {
  await waitFor(() => esbuildUnder(workers).length === 0, `no esbuild process under the workers ${when}`, 5000).catch(
    () => {
      const left = esbuildUnder(workers).map((p) => `${p.pid} ${p.command}`);
      assert.fail(`esbuild processes left under the workers ${when}: ${left.join('; ')}`);
    },
  );
}

for (const [kind, app] of [
  ['an ES module', 'typescript/esm-app.ts:app'],
  ['CommonJS (.cts)', 'typescript/cjs-app.cts:app'],
] as const) {
  test(`a TypeScript app (${kind}) served by 2 workers leaves no esbuild process among the workers' children`, async (t) => {
    const tmp = scratchDir('tsgun-tsx-cache-');
    const s = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', app], { env: { TMPDIR: tmp } });
    t.after(() => s.stop());
    const url = await s.ready(2);
    const workers = workerPidsByTitle(s.pid);
    assert.equal(workers.length, 2);
    assert.match(s.grep(/^Loaded app /)[0]?.msg ?? '', /TypeScript compiled by tsx/);
    await expectNoEsbuild(workers, 'once they are ready');

    // Each worker compiles late.ts on its first /late: ask until both have answered.
    const answered = new Set<number>();
    await waitFor(
      async () => {
        const reply = await request(url, { path: '/late' });
        assert.equal(reply.status, 200, reply.body);
        const [body, pid] = reply.body.split(' ');
        assert.equal(body, 'late');
        answered.add(Number(pid));
        return answered.size === 2;
      },
      'both workers to answer /late',
      20_000,
    );
    await expectNoEsbuild(workers, 'after compiling a module while serving');
  });
}
