/**
 * Frameworks as their users write them: a NestJS app with constructor injection, from .ts,
 * served by a real tsgun master with two workers.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, request, scratchDir, Tsgun } from '../helpers.js';

const NEST = path.join(FIXTURES, 'frameworks', 'nest');
const INJECTED = /^hello from GreetingService in (\d+)$/;

async function serveNest(
  t: { after(fn: () => unknown): void },
  app: string,
  args: readonly string[] = [],
): Promise<{ tsgun: Tsgun; url: string; dir: string }> {
  const dir = scratchDir('tsgun-nest-');
  const tsgun = new Tsgun(['-w', '2', '-b', '127.0.0.1:0', '--chdir', NEST, ...args, app], {
    env: { NEST_SHUTDOWN_DIR: dir },
  });
  t.after(() => tsgun.stop());
  const [url] = await tsgun.listening();
  await tsgun.waitForLine(/^Ready: 2 workers/, 60_000);
  return { tsgun, url: url!, dir };
}

async function expectInjected(url: string): Promise<void> {
  const reply = await request(url);
  assert.equal(reply.status, 200, reply.body);
  assert.match(reply.body, INJECTED);
}

test('a Nest app object returned by a factory: constructor injection works from .ts, SWC is logged, close() runs on TERM', async (t) => {
  const { tsgun, url, dir } = await serveNest(t, 'main:create()');
  await expectInjected(url);
  assert.equal(
    tsgun.grep(/^TypeScript compiled by SWC \(emitDecoratorMetadata in .*nest\/tsconfig\.json\)$/).length,
    1,
    tsgun.stderr,
  );
  const { code } = await tsgun.stop();
  assert.equal(code, 0, tsgun.stderr);
  // onApplicationShutdown runs only through the Nest app's close(): one file per worker.
  const files = readdirSync(dir).filter((f) => f.startsWith('shutdown-'));
  assert.equal(files.length, 2, tsgun.stderr);
  for (const f of files) assert.equal(readFileSync(path.join(dir, f), 'utf8'), 'close');
});

test('a Nest app object exported as it is is initialised and served', async (t) => {
  const { tsgun, url, dir } = await serveNest(t, 'exported:app');
  await expectInjected(url);
  assert.equal((await tsgun.stop()).code, 0, tsgun.stderr);
  assert.equal(readdirSync(dir).length, 2);
});

test("a factory that returns the Nest app's Express instance gets its injected service", async (t) => {
  const { url } = await serveNest(t, 'main:instance()');
  await expectInjected(url);
});

test('an app whose tsconfig.json does not ask for decorator metadata stays on tsx', async (t) => {
  const tsgun = new Tsgun([
    '-b',
    '127.0.0.1:0',
    '--log-level',
    'debug',
    '--chdir',
    path.join(FIXTURES, 'frameworks', 'no-metadata'),
    'app',
  ]);
  t.after(() => tsgun.stop());
  const [url] = await tsgun.listening();
  await tsgun.waitForLine(/^Ready: 1 workers/);
  assert.equal(tsgun.grep(/^Loaded app app \(node, from .*; TypeScript compiled by tsx\) in /).length, 1, tsgun.stderr);
  assert.equal((await request(url!)).body, 'plain');
  assert.equal(tsgun.grep(/SWC/).length, 0);
});
