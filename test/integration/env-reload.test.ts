/**
 * HUP rebuilds the workers' environment from the master's original environment plus the
 * current raw_env and env_file: a key removed from either is gone from the new workers.
 */
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, request, scratchDir, sleep, Tsgun } from '../helpers.js';

const APP = path.join(FIXTURES, 'runapi', 'app.mjs');

/**
 * What `/env` answers once the old worker has stopped accepting: right after `Reload complete`
 * a new connection may still reach the draining worker, so ask until the answer is `want`
 * (or 10 s have passed) and return the last answer.
 */
async function envOnceRetired(url: string, want: string): Promise<string> {
  const until = Date.now() + 10_000;
  let body = '';
  while (Date.now() < until && (body = (await request(`${url}/env`)).body) !== want) await sleep(100);
  return body;
}

test('a key removed from raw_env or env_file, then HUP: the new workers no longer see it', async (t) => {
  const dir = scratchDir();
  copyFileSync(APP, path.join(dir, 'app.mjs'));
  const conf = path.join(dir, 'conf.mjs');
  const envFile = path.join(dir, 'app.env');
  writeFileSync(conf, "export default { raw_env: ['FOO=from-raw-env'], env_file: 'app.env' };\n");
  writeFileSync(envFile, 'BAR=from-env-file\n');
  const tsgun = new Tsgun(['-c', conf, '-b', '127.0.0.1:0', '-w', '1', 'app:app'], {
    cwd: dir,
    env: { FOO: 'from-outside' },
  });
  t.after(() => tsgun.stop());
  const url = await tsgun.ready(1);
  assert.equal((await request(`${url}/env`)).body, 'FOO=from-raw-env');

  // raw_env no longer sets FOO: the new workers see the master's original value again.
  writeFileSync(conf, "export default { env_file: 'app.env' };\n");
  let seen = tsgun.lines.length;
  tsgun.signal('SIGHUP');
  await tsgun.waitForLine(/^Reload complete/, 30_000, seen);
  assert.equal(await envOnceRetired(url, 'FOO=from-outside'), 'FOO=from-outside');

  // An env_file that now sets FOO, then a config without it: gone again.
  writeFileSync(envFile, 'FOO=from-env-file\n');
  seen = tsgun.lines.length;
  tsgun.signal('SIGHUP');
  await tsgun.waitForLine(/^Reload complete/, 30_000, seen);
  assert.equal(await envOnceRetired(url, 'FOO=from-env-file'), 'FOO=from-env-file');
  writeFileSync(conf, 'export default {};\n');
  seen = tsgun.lines.length;
  tsgun.signal('SIGHUP');
  await tsgun.waitForLine(/^Reload complete/, 30_000, seen);
  assert.equal(await envOnceRetired(url, 'FOO=from-outside'), 'FOO=from-outside');
});

test('a key that only raw_env set is unset in the workers after it is removed and HUP', async (t) => {
  const dir = scratchDir();
  copyFileSync(APP, path.join(dir, 'app.mjs'));
  const conf = path.join(dir, 'conf.mjs');
  writeFileSync(conf, "export default { raw_env: ['FOO=only-here'] };\n");
  const tsgun = new Tsgun(['-c', conf, '-b', '127.0.0.1:0', '-w', '1', 'app:app'], {
    cwd: dir,
    env: { FOO: undefined },
  });
  t.after(() => tsgun.stop());
  const url = await tsgun.ready(1);
  assert.equal((await request(`${url}/env`)).body, 'FOO=only-here');
  writeFileSync(conf, 'export default {};\n');
  const seen = tsgun.lines.length;
  tsgun.signal('SIGHUP');
  await tsgun.waitForLine(/^Reload complete/, 30_000, seen);
  assert.equal(await envOnceRetired(url, 'FOO=(unset)'), 'FOO=(unset)');
});
