import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { InfoRequested, splitArgs } from '../../src/config/cli.js';
import { formatConfig, nearestSetting, resolveConfig, type ResolvedConfig } from '../../src/config/resolve.js';
import { defaultSettings, SETTING_NAMES } from '../../src/config/settings.js';
import { ExitCode, TsgunError, type ErrorCode } from '../../src/errors.js';

const VERSION = '9.9.9';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tsgun-resolve-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;

/** A fresh directory holding the given files. */
function proj(files: Record<string, string> = {}): string {
  const dir = path.join(tmp, `p${++dirs}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

function resolve(argv: string[], env: Record<string, string | undefined> = {}, cwd = proj()): Promise<ResolvedConfig> {
  return resolveConfig({ argv, env, cwd, version: VERSION });
}

async function rejects(p: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof TsgunError, `expected a TsgunError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.exitCode, ExitCode.USAGE);
    assert.match(err.message, message);
    return true;
  });
}

test('nothing given: every value is its default, from "default"', async () => {
  const r = await resolveConfig({ argv: ['main:app'], env: {}, cwd: proj(), version: VERSION });
  assert.deepEqual(r.settings, { ...defaultSettings(), config: null });
  for (const name of SETTING_NAMES) assert.equal(r.sources[name], 'default', name);
  assert.equal(r.configFile, null);
  assert.equal(r.app, 'main:app');
});

test('no APP is not an error at this stage', async () => {
  assert.equal((await resolveConfig({ argv: [], env: {}, cwd: proj(), version: VERSION })).app, null);
});

test('a config file given with -c, relative to cwd', async () => {
  const cwd = proj({ 'my.yaml': 'workers: 3\nbind: ["127.0.0.1:9000", "unix:/tmp/x.sock"]\ntimeout: 12.5\n' });
  const r = await resolveConfig({ argv: ['-c', 'my.yaml', 'main:app'], env: {}, cwd, version: VERSION });
  const file = path.join(cwd, 'my.yaml');
  assert.equal(r.configFile, file);
  assert.equal(r.settings.config, file);
  assert.equal(r.settings.workers, 3);
  assert.deepEqual(r.settings.bind, ['127.0.0.1:9000', 'unix:/tmp/x.sock']);
  assert.equal(r.settings.timeout, 12.5);
  assert.equal(r.sources.workers, `file ${file}`);
  assert.equal(r.sources.bind, `file ${file}`);
  assert.equal(r.sources.keepalive, 'default');
});

test('./tsgun.conf.* is found without -c, .ts before .yaml', async () => {
  const yamlOnly = proj({ 'tsgun.conf.yaml': 'workers: 4\n' });
  const r1 = await resolveConfig({ argv: [], env: {}, cwd: yamlOnly, version: VERSION });
  assert.equal(r1.configFile, path.join(yamlOnly, 'tsgun.conf.yaml'));
  assert.equal(r1.settings.workers, 4);

  const both = proj({
    'tsgun.conf.yaml': 'workers: 4\n',
    'tsgun.conf.ts': 'const workers: number = 6;\nexport default { workers, proc_name: "from-ts" };\n',
  });
  const r2 = await resolveConfig({ argv: [], env: {}, cwd: both, version: VERSION });
  assert.equal(r2.configFile, path.join(both, 'tsgun.conf.ts'));
  assert.equal(r2.settings.workers, 6);
  assert.equal(r2.settings.proc_name, 'from-ts');

  const json = proj({ 'tsgun.conf.json': '{"workers": 2, "loglevel": "debug"}' });
  const r3 = await resolveConfig({ argv: [], env: {}, cwd: json, version: VERSION });
  assert.equal(r3.settings.loglevel, 'debug');
  assert.equal(r3.sources.loglevel, `file ${path.join(json, 'tsgun.conf.json')}`);
});

test('hooks come from a script config file', async () => {
  const cwd = proj({ 'hooks.mjs': 'export default { on_starting: function onStarting() {}, workers: 2 };\n' });
  const r = await resolveConfig({ argv: ['-c', 'hooks.mjs'], env: {}, cwd, version: VERSION });
  assert.equal(typeof r.settings.on_starting, 'function');
  assert.match(formatConfig(r), /^on_starting\s+= <function onStarting> {2}\(file .*hooks\.mjs\)$/m);
});

test('precedence: default < file < PORT / WEB_CONCURRENCY < TSGUN_CMD_ARGS < command line', async () => {
  const cwd = proj({
    'tsgun.conf.yaml': 'workers: 2\nbind: "127.0.0.1:7000"\nkeepalive: 9\nloglevel: debug\ntimeout: 40\n',
  });
  const file = `file ${path.join(cwd, 'tsgun.conf.yaml')}`;

  const fileOnly = await resolveConfig({ argv: [], env: {}, cwd, version: VERSION });
  assert.equal(fileOnly.settings.workers, 2);
  assert.equal(fileOnly.sources.workers, file);

  const env = { WEB_CONCURRENCY: '3', PORT: '5000' };
  const withEnv = await resolveConfig({ argv: [], env, cwd, version: VERSION });
  assert.equal(withEnv.settings.workers, 3);
  assert.equal(withEnv.sources.workers, 'env WEB_CONCURRENCY');
  assert.deepEqual(withEnv.settings.bind, ['0.0.0.0:5000']);
  assert.equal(withEnv.sources.bind, 'env PORT');
  assert.equal(withEnv.settings.keepalive, 9);
  assert.equal(withEnv.sources.keepalive, file);

  const cmdArgs = {
    ...env,
    TSGUN_CMD_ARGS: `-w 4 --keep-alive 2 -n "my shop" --access-logformat '%(h)s "%(r)s" %(s)s'`,
  };
  const withCmd = await resolveConfig({ argv: [], env: cmdArgs, cwd, version: VERSION });
  assert.equal(withCmd.settings.workers, 4);
  assert.equal(withCmd.sources.workers, 'env TSGUN_CMD_ARGS');
  assert.equal(withCmd.settings.keepalive, 2);
  assert.equal(withCmd.settings.proc_name, 'my shop');
  assert.equal(withCmd.settings.access_log_format, '%(h)s "%(r)s" %(s)s');
  assert.equal(withCmd.sources.access_log_format, 'env TSGUN_CMD_ARGS');
  assert.equal(withCmd.sources.bind, 'env PORT');
  assert.equal(withCmd.sources.loglevel, file);

  const all = await resolveConfig({
    argv: ['-w', '5', '-b', ':1', '-b', ':2', 'main:app'],
    env: cmdArgs,
    cwd,
    version: VERSION,
  });
  assert.equal(all.settings.workers, 5);
  assert.equal(all.sources.workers, 'command line');
  assert.deepEqual(all.settings.bind, [':1', ':2'], "a repeated flag replaces the lower layers' list");
  assert.equal(all.sources.bind, 'command line');
  assert.equal(all.settings.keepalive, 2);
  assert.equal(all.sources.keepalive, 'env TSGUN_CMD_ARGS');
  assert.equal(all.settings.timeout, 40);
  assert.equal(all.sources.timeout, file);
  assert.equal(all.sources.graceful_timeout, 'default');
});

test('empty environment variables are ignored', async () => {
  const r = await resolveConfig({
    argv: [],
    env: { WEB_CONCURRENCY: '', PORT: '  ', TSGUN_CMD_ARGS: '' },
    cwd: proj(),
    version: VERSION,
  });
  assert.equal(r.sources.workers, 'default');
  assert.equal(r.sources.bind, 'default');
});

test('TSGUN_CMD_ARGS can name the config file and the APP; the command line wins', async () => {
  const cwd = proj({ 'a.yaml': 'workers: 2\n', 'b.yaml': 'workers: 3\n' });
  const viaEnv = await resolveConfig({ argv: [], env: { TSGUN_CMD_ARGS: '-c a.yaml env:app' }, cwd, version: VERSION });
  assert.equal(viaEnv.configFile, path.join(cwd, 'a.yaml'));
  assert.equal(viaEnv.settings.workers, 2);
  assert.equal(viaEnv.app, 'env:app');
  const cli = await resolveConfig({
    argv: ['-c', 'b.yaml', 'cli:app'],
    env: { TSGUN_CMD_ARGS: '-c a.yaml env:app' },
    cwd,
    version: VERSION,
  });
  assert.equal(cli.configFile, path.join(cwd, 'b.yaml'));
  assert.equal(cli.settings.workers, 3);
  assert.equal(cli.app, 'cli:app');
});

test('flags of each type parse from the command line', async () => {
  const r = await resolveConfig({
    argv: [
      '--check-config',
      '-t',
      '0.5',
      '--interface',
      'fetch',
      '-e',
      'A=1',
      '-e',
      'B=x=y',
      '--log-level',
      'warning',
      'm:a',
    ],
    env: {},
    cwd: proj(),
    version: VERSION,
  });
  assert.equal(r.settings.check_config, true);
  assert.equal(r.settings.timeout, 0.5);
  assert.equal(r.settings.interface, 'fetch');
  assert.deepEqual(r.settings.raw_env, ['A=1', 'B=x=y']);
  assert.equal(r.settings.loglevel, 'warning');
});

test('config mistakes are errors with the key, the file and the expected form', async () => {
  const cwd = proj({
    'typo.yaml': 'wokers: 2\n',
    'far.yaml': 'zzzzzzzzzz: 1\n',
    'type.yaml': 'workers: "four"\n',
    'range.yaml': 'workers: 0\n',
    'bind.yaml': 'bind: "[::1"\n',
    'cli-only.yaml': 'config: other.yaml\n',
    'list.yaml': '- workers\n',
    'syntax.yaml': 'workers: [1\n',
    'noexport.mjs': 'export const workers = 2;\n',
    'conf.toml': 'workers = 2\n',
  });
  const f = (n: string): string => path.join(cwd, n).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  await rejects(
    resolve(['-c', 'typo.yaml'], {}, cwd),
    'TSGUN_ERR_CONFIG_KEY',
    new RegExp(`^config file ${f('typo.yaml')}: unknown setting "wokers"; did you mean "workers"\\?$`),
  );
  await rejects(
    resolve(['-c', 'far.yaml'], {}, cwd),
    'TSGUN_ERR_CONFIG_KEY',
    /unknown setting "zzzzzzzzzz"; see docs\/settings\.md for the keys$/,
  );
  await rejects(
    resolve(['-c', 'type.yaml'], {}, cwd),
    'TSGUN_ERR_CONFIG_VALUE',
    new RegExp(`^config file ${f('type.yaml')}: setting "workers" expected an integer from 1 to 1024, got "four"$`),
  );
  await rejects(
    resolve(['-c', 'range.yaml'], {}, cwd),
    'TSGUN_ERR_CONFIG_VALUE',
    /setting "workers" expected an integer from 1 to 1024, got 0$/,
  );
  await rejects(
    resolve(['-c', 'bind.yaml'], {}, cwd),
    'TSGUN_ERR_CONFIG_VALUE',
    /setting "bind" cannot parse bind address "\[::1": missing "\]"/,
  );
  await rejects(
    resolve(['-c', 'cli-only.yaml'], {}, cwd),
    'TSGUN_ERR_CONFIG_KEY',
    /"config"; config can only be given on the command line$/,
  );
  await rejects(
    resolve(['-c', 'list.yaml'], {}, cwd),
    'TSGUN_ERR_CONFIG_FILE',
    /must hold an object of settings .*not an array$/,
  );
  await rejects(
    resolve(['-c', 'syntax.yaml'], {}, cwd),
    'TSGUN_ERR_CONFIG_FILE',
    /^cannot load config file .*syntax\.yaml: /,
  );
  await rejects(
    resolve(['-c', 'noexport.mjs'], {}, cwd),
    'TSGUN_ERR_CONFIG_FILE',
    /it has no default export; write `export default defineConfig/,
  );
  await rejects(resolve(['-c', 'conf.toml'], {}, cwd), 'TSGUN_ERR_CONFIG_FILE', /unsupported extension "\.toml"/);
  await rejects(
    resolve(['-c', 'missing.yaml'], {}, cwd),
    'TSGUN_ERR_CONFIG_FILE',
    /missing\.yaml does not exist; check the path given to -c\/--config$/,
  );
});

test('command-line and environment mistakes are usage or value errors', async () => {
  await rejects(
    resolve(['--wokers', '2']),
    'TSGUN_ERR_USAGE',
    /^command line: unknown option '--wokers' \(Did you mean --workers\?\); see tsgun --help$/,
  );
  await rejects(resolve(['-w']), 'TSGUN_ERR_USAGE', /^command line: option '-w, --workers <int>' argument missing/);
  await rejects(
    resolve(['-w', 'four']),
    'TSGUN_ERR_USAGE',
    /argument 'four' is invalid\. expected an integer from 1 to 1024, got "four"/,
  );
  await rejects(resolve(['a:b', 'c:d']), 'TSGUN_ERR_USAGE', /too many arguments/);
  await rejects(
    resolve([], { TSGUN_CMD_ARGS: '--nope' }),
    'TSGUN_ERR_USAGE',
    /^TSGUN_CMD_ARGS: unknown option '--nope'/,
  );
  await rejects(
    resolve([], { TSGUN_CMD_ARGS: '-n "unclosed' }),
    'TSGUN_ERR_USAGE',
    /^TSGUN_CMD_ARGS has an unclosed " quote$/,
  );
  await rejects(
    resolve([], { WEB_CONCURRENCY: 'lots' }),
    'TSGUN_ERR_CONFIG_VALUE',
    /^environment variable WEB_CONCURRENCY="lots" \(sets workers\): expected an integer/,
  );
  await rejects(
    resolve([], { PORT: '99999' }),
    'TSGUN_ERR_CONFIG_VALUE',
    /^environment variable PORT="99999" \(sets bind\): cannot parse bind address "0\.0\.0\.0:99999"/,
  );
});

test('--help and --version are returned as output, not printed', async () => {
  await assert.rejects(resolve(['--help']), (err: unknown) => {
    assert.ok(err instanceof InfoRequested);
    assert.match(err.output, /^Usage: tsgun \[options\] APP/);
    assert.match(err.output, /-w, --workers <int>/);
    assert.match(err.output, /env: WEB_CONCURRENCY/);
    return true;
  });
  await assert.rejects(
    resolve(['--version']),
    (err: unknown) => err instanceof InfoRequested && err.output === `${VERSION}\n`,
  );
});

test('each resolution starts from fresh defaults', async () => {
  const a = await resolve([]);
  a.settings.bind.push('0.0.0.0:1');
  a.settings.raw_env.push('X=1');
  const b = await resolve([]);
  assert.deepEqual(b.settings.bind, ['127.0.0.1:8000']);
  assert.deepEqual(b.settings.raw_env, []);
});

test('nearestSetting suggests the closest name, or nothing when none is close', () => {
  assert.equal(nearestSetting('wokers'), 'workers');
  assert.equal(nearestSetting('Workers'), 'workers');
  assert.equal(nearestSetting('graceful-timeout'), 'graceful_timeout');
  assert.equal(nearestSetting('gracefull_timeout'), 'graceful_timeout');
  assert.equal(nearestSetting('bnd'), 'bind');
  assert.equal(nearestSetting('log_level'), 'loglevel');
  assert.equal(nearestSetting('access_log_fromat'), 'access_log_format');
  assert.equal(nearestSetting('keep_alive'), 'keepalive');
  assert.equal(nearestSetting('zzzzzzzzzz'), null);
  assert.equal(nearestSetting('database_url'), null);
});

test('formatConfig: every setting, aligned, with its value and source', async () => {
  const cwd = proj({ 'tsgun.conf.yaml': 'keepalive: 3\n' });
  const r = await resolveConfig({
    argv: ['-w', '3', '-b', '127.0.0.1:0', 'main:app'],
    env: { PORT: '8080' },
    cwd,
    version: VERSION,
  });
  const text = formatConfig(r);
  assert.ok(text.endsWith('\n'));
  const lines = text.slice(0, -1).split('\n');
  assert.equal(lines.length, SETTING_NAMES.length);
  assert.deepEqual(
    lines.map((l) => l.split(' ')[0]),
    SETTING_NAMES,
    'one line per setting, in registry order',
  );
  const column = lines[0]!.indexOf(' = ');
  for (const line of lines) assert.equal(line.indexOf(' = '), column, `aligned: ${line}`);
  const line = (name: string): string => lines.find((l) => l.startsWith(`${name} `))!.replace(/ +=/, ' =');
  assert.equal(line('workers'), 'workers = 3  (command line)');
  assert.equal(line('bind'), 'bind = ["127.0.0.1:0"]  (command line)');
  assert.equal(line('keepalive'), `keepalive = 3  (file ${path.join(cwd, 'tsgun.conf.yaml')})`);
  assert.equal(line('config'), `config = ${JSON.stringify(path.join(cwd, 'tsgun.conf.yaml'))}  (default)`);
  assert.equal(line('proc_name'), 'proc_name = null  (default)');
  assert.equal(line('on_starting'), 'on_starting = null  (default)');
  assert.equal(line('errorlog'), 'errorlog = "-"  (default)');
  assert.equal(line('interface'), 'interface = auto  (default)');
  const withPort = formatConfig(
    await resolveConfig({ argv: [], env: { PORT: '8080' }, cwd: proj(), version: VERSION }),
  );
  assert.match(withPort, /^bind +=  ?\["0\.0\.0\.0:8080"\] {2}\(env PORT\)$/m);
});

test('splitArgs: words, quotes and backslashes as a shell would', () => {
  assert.deepEqual(splitArgs(''), []);
  assert.deepEqual(splitArgs('   '), []);
  assert.deepEqual(splitArgs('-w 4  -b :8000'), ['-w', '4', '-b', ':8000']);
  assert.deepEqual(splitArgs('\t-w\n4 '), ['-w', '4']);
  assert.deepEqual(splitArgs(`-n "my app" -e 'A=b c'`), ['-n', 'my app', '-e', 'A=b c']);
  assert.deepEqual(splitArgs(`--access-logformat '%(h)s "%(r)s"'`), ['--access-logformat', '%(h)s "%(r)s"']);
  assert.deepEqual(splitArgs(`"it's"`), [`it's`]);
  assert.deepEqual(splitArgs(`a"b c"d`), ['ab cd']);
  assert.deepEqual(splitArgs(`"" ''`), ['', '']);
  assert.deepEqual(splitArgs(`"a\\"b"`), ['a"b']);
  assert.deepEqual(splitArgs(`'a\\b'`), ['a\\b'], 'no escapes inside single quotes');
  assert.deepEqual(splitArgs(`a\\ b c`), ['a b', 'c']);
  assert.deepEqual(splitArgs(`\\"x`), ['"x']);
  for (const bad of [`"open`, `'open`, `a "b' c`]) {
    assert.throws(
      () => splitArgs(bad),
      (err: unknown) => err instanceof TsgunError && err.code === 'TSGUN_ERR_USAGE' && /unclosed/.test(err.message),
      bad,
    );
  }
});
