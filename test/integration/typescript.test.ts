/**
 * TypeScript apps compiled by tsx leave no esbuild process in the workers: not once they are
 * ready, and not after a request that compiled a module the boot did not load. The compile
 * cache is cold (tsx keeps it under the temporary directory), so esbuild does compile.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { childPidsSync, request, scratchDir, titleOf, Tsgun, waitFor, workerPidsByTitle } from '../helpers.js';

/** Every descendant of `pid`, with its command line. */
function descendants(pid: number): Array<{ pid: number; command: string }> {
  return childPidsSync(pid).flatMap((child) => [{ pid: child, command: titleOf(child) }, ...descendants(child)]);
}

function esbuildUnder(workers: number[]): Array<{ pid: number; command: string }> {
  return workers.flatMap(descendants).filter((p) => /esbuild/.test(p.command));
}

/** Wait (a few seconds at most) until no esbuild process is left under the workers. */
async function expectNoEsbuild(workers: number[], when: string): Promise<void> {
  await waitFor(() => esbuildUnder(workers).length === 0, `no esbuild process under the workers ${when}`, 5000).catch(() => {
    const left = esbuildUnder(workers).map((p) => `${p.pid} ${p.command}`);
    assert.fail(`esbuild processes left under the workers ${when}: ${left.join('; ')}`);
  });
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
    await waitFor(async () => {
      const reply = await request(url, { path: '/late' });
      assert.equal(reply.status, 200, reply.body);
      const [body, pid] = reply.body.split(' ');
      assert.equal(body, 'late');
      answered.add(Number(pid));
      return answered.size === 2;
    }, 'both workers to answer /late', 20_000);
    await expectNoEsbuild(workers, 'after compiling a module while serving');
  });
}
