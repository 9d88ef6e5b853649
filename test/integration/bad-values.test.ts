/**
 * Every setting in the registry, given a bad value, stops tsgun before anything is bound:
 * one `Error:` line, exit 2 from a normal start and 1 from --check-config (DESIGN.md), never
 * "failed unexpectedly". The table below must name every setting, so a new one gets a bad
 * value here too. (Each wrong JSON kind per setting is checked in test/unit/bad-values.test.ts.)
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { SETTING_NAMES, SETTINGS, type SettingName } from '../../src/config/settings.js';
import { runTsgun, scratchDir } from '../helpers.js';

/** A bad value per setting: a command-line argument, or (for what has no flag, or where the flag cannot be wrong) a config-file value. */
type Bad = { cli: string } | { file: unknown };

const BAD: Record<SettingName, Bad> = {
  config: { cli: 'conf.txt' },
  check_config: { cli: '--check-config=maybe' },
  print_config: { cli: '--print-config=maybe' },
  bind: { cli: 'garbage::x' },
  backlog: { cli: '0' },
  reuse_port: { file: 'yes' },
  workers: { cli: 'many' },
  reload_batch: { cli: '-2' },
  worker_class: { cli: 'gevent' },
  timeout: { cli: '-1' },
  boot_timeout: { cli: 'soon' },
  max_worker_memory: { cli: '12 parsecs' },
  stats_interval: { cli: '0' },
  graceful_timeout: { cli: 'x' },
  keepalive: { cli: '-5' },
  max_requests: { cli: '-1' },
  max_requests_jitter: { cli: '1.5' },
  balance_connections: { file: 'no' },
  chdir: { file: 5 },
  raw_env: { cli: 'NOEQUALS' },
  // Not --env-file on the command line: Node 20 reads `--env-file` anywhere in argv as its own.
  env_file: { file: [] },
  user: { cli: 'no-such-user-tsgun' },
  group: { cli: 'no-such-group-tsgun' },
  umask: { cli: '999' },
  pidfile: { file: 5 },
  proc_name: { file: {} },
  factory: { file: 'yes' },
  interface: { cli: 'soap' },
  control_socket: { file: true },
  metrics_bind: { cli: 'garbage::x' },
  reload: { file: 'on' },
  reload_dirs: { file: 5 },
  reload_include: { file: [1] },
  reload_exclude: { file: {} },
  reload_delay: { cli: '-1' },
  reload_extra_files: { file: 5 },
  loglevel: { cli: 'loud' },
  log_format: { cli: 'xml' },
  errorlog: { file: 5 },
  capture_output: { file: 'yes' },
  accesslog: { file: true },
  access_log_format: { file: 5 },
  limit_request_line: { cli: '70000' },
  limit_request_fields: { cli: '-1' },
  limit_request_field_size: { cli: 'big' },
  headers_timeout: { cli: '-1' },
  request_timeout: { cli: 'x' },
  idle_connection_timeout: { cli: '-1' },
  worker_connections: { cli: 'x' },
  limit_concurrency: { cli: '-1' },
  server_header: { file: 'no' },
  date_header: { file: 0 },
  headers: { cli: 'NoColon' },
  root_path: { file: 5 },
  forwarded_allow_ips: { cli: 'not-an-ip' },
  proxy_protocol: { cli: 'v3' },
  proxy_protocol_timeout: { cli: '-1' },
  forwarded_headers: { cli: 'both' },
  proxy_allow_ips: { cli: '300.1.1.1' },
  certfile: { file: 5 },
  keyfile: { file: true },
  keyfile_password: { file: 5 },
  ca_certs: { file: [] },
  cert_reqs: { cli: 'maybe' },
  ciphers: { file: 5 },
  on_starting: { file: 'x' },
  on_reload: { file: 1 },
  when_ready: { file: true },
  pre_fork: { file: [] },
  post_fork: { file: {} },
  post_worker_init: { file: 'x' },
  worker_int: { file: 1 },
  worker_abort: { file: true },
  pre_exec: { file: [] },
  pre_request: { file: {} },
  post_request: { file: 'x' },
  child_exit: { file: 1 },
  worker_exit: { file: true },
  nworkers_changed: { file: [] },
  on_exit: { file: {} },
  ssl_context: { file: 'x' },
};

test('the table gives every setting of the registry a bad value', () => {
  assert.deepEqual(
    SETTING_NAMES.filter((n) => !(n in BAD)),
    [],
  );
});

/** The command line for a bad value: the setting's long flag with it, or a JSON config file holding it. */
function argsFor(name: SettingName, bad: Bad, dir: string): string[] {
  const s = SETTINGS[name] as { cli?: readonly string[] };
  if ('file' in bad) {
    const conf = path.join(dir, `${name}.json`);
    writeFileSync(conf, JSON.stringify({ [name]: bad.file }));
    return ['-c', conf];
  }
  if (bad.cli.startsWith('--')) return [bad.cli];
  return [s.cli!.at(-1)!, bad.cli];
}

for (const name of SETTING_NAMES) {
  const bad = BAD[name];
  test(`${name}: ${JSON.stringify(bad)} stops tsgun with one Error: line, before anything is bound`, async () => {
    const dir = scratchDir();
    const sock = path.join(dir, 'tsgun.sock');
    const args = [...argsFor(name, bad, dir), '-b', `unix:${sock}`];
    for (const [mode, status] of [
      ['start', 2],
      ['--check-config', 1],
    ] as const) {
      const r = await runTsgun([...args, ...(mode === 'start' ? [] : [mode]), 'express-app:app'], {
        timeoutMs: 20_000,
      });
      const errors = r.stderr.split('\n').filter((l) => l.startsWith('Error:'));
      assert.equal(errors.length, 1, `${mode}: ${r.stderr}`);
      assert.doesNotMatch(errors[0]!, /failed unexpectedly/, mode);
      assert.equal(r.code, status, `${mode}: ${r.stderr}`);
      assert.equal(existsSync(sock), false, `${mode}: the socket was bound`);
    }
  });
}
