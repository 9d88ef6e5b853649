/**
 * The console's formatting, without processes: `--help` built from the registry (grouped,
 * within 100 columns), the live status table, and when pretty log lines are coloured.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatHelp, HELP_WIDTH, item, wrap } from '../../src/config/help.js';
import { flagsOf } from '../../src/config/help.js';
import { getSetting, SECTIONS, SETTING_NAMES } from '../../src/config/settings.js';
import { formatStatus } from '../../src/control-client.js';
import { prettyLine, wantsColour } from '../../src/log.js';
import type { ArbiterSnapshot } from '../../src/master/snapshot.js';

test('--help: every line within 100 columns; every section with flags has a heading, and its flags follow it', () => {
  const help = formatHelp();
  for (const line of help.split('\n')) assert.ok(line.length <= HELP_WIDTH, `${line.length} columns: ${line}`);
  const lines = help.split('\n');
  for (const section of SECTIONS) {
    const names = SETTING_NAMES.filter((n) => getSetting(n).section === section && getSetting(n).cli);
    if (names.length === 0) continue;
    const at = lines.indexOf(`${section}:`);
    assert.ok(at > 0, `no heading for ${section}`);
    const end = lines.indexOf('', at);
    const block = lines.slice(at, end).join('\n');
    for (const n of names) assert.ok(block.includes(`  ${flagsOf(n)}`), `${flagsOf(n)} is not under ${section}`);
  }
  for (const command of ['status', 'reload', 'scale <count>', 'stop', 'help [command]'])
    assert.match(help, new RegExp(`^  ${command.replace(/[[\]]/g, '\\$&')}(?= |$)`, 'm'));
});

test('wrap and item: long descriptions wrap in their column; flags too long for it put the description below', () => {
  assert.deepEqual(wrap('a bb ccc dddd', 6), ['a bb', 'ccc', 'dddd']);
  const text = item('--short', 'word '.repeat(40).trim());
  const rows = text.split('\n');
  assert.ok(rows.length > 1);
  assert.ok(rows.every((r) => r.length <= HELP_WIDTH));
  assert.ok(rows.slice(1).every((r) => r.startsWith(' '.repeat(36))));
  const long = item('--a-flag-that-is-far-too-long-for-the-column <value>', 'described below');
  assert.deepEqual(long.split('\n'), [
    '  --a-flag-that-is-far-too-long-for-the-column <value>',
    `${' '.repeat(36)}described below`,
  ]);
});

const worker = (pid: number, requests: number, connections: number): ArbiterSnapshot['workers'][number] =>
  ({
    id: pid,
    pid,
    generation: 1,
    state: 'ready',
    spawnedAt: 0,
    stats: { requests, connections, upgraded: 1 },
    cpu: 2,
    rss: 1024 * 1024,
  }) as never;

test('status table with rates (status --watch): a REQ/S column and a totals row', () => {
  const snapshot = {
    pid: 1,
    app: 'main:app',
    version: '0.0.0',
    startedAt: 0,
    generation: 1,
    target: 2,
    reloading: false,
    cpu: 1,
    rss: 1024 * 1024,
    sockets: ['http://127.0.0.1:8000'],
    workers: [worker(10, 50, 3), worker(11, 20, 4)],
    retired: { requests: 5 },
    restarts: {},
  } as unknown as ArbiterSnapshot;
  const table = formatStatus(
    snapshot,
    10_000,
    new Map([
      [10, 12.5],
      [11, 2],
    ]),
  ).split('\n');
  assert.match(table[3]!, /^ROLE +PID +GEN +STATE +UPTIME +REQUESTS +REQ\/S +CONNS +UPGRADED +CPU% +RSS$/);
  assert.match(table[5]!, /^worker +10 +1 +ready +10s +50 +12\.5 +3 +1 +2\.0 +1\.0 MiB$/);
  assert.match(table[7]!, /^total +2 workers +75 +14\.5 +7 +2 +5\.0 +3\.0 MiB$/);
  assert.doesNotMatch(formatStatus(snapshot, 10_000), /REQ\/S|^total/m, 'plain status keeps its table');
});

test('colour: a terminal has it; NO_COLOR turns it off; FORCE_COLOR forces it (0 or false turns it off)', () => {
  assert.equal(wantsColour(true, {}), true);
  assert.equal(wantsColour(false, {}), false);
  assert.equal(wantsColour(true, { NO_COLOR: '1' }), false);
  assert.equal(wantsColour(true, { NO_COLOR: '' }), true);
  assert.equal(wantsColour(false, { FORCE_COLOR: '1' }), true);
  assert.equal(wantsColour(true, { FORCE_COLOR: '0' }), false);
  const json = JSON.stringify({ level: 'warn', time: 0, pid: 7, msg: 'careful' });
  const esc = '\x1b';
  const coloured = prettyLine(json, true);
  assert.ok(
    coloured.startsWith(`${esc}[2m[`) && coloured.endsWith(`]${esc}[0m [7] ${esc}[33m[WARNING]${esc}[0m careful\n`),
    JSON.stringify(coloured),
  );
  assert.ok(!prettyLine(json, false).includes(esc));
});
