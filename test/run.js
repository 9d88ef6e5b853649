#!/usr/bin/env node
// Runs the whole suite with node's test runner: unit tests, then integration tests.
// TypeScript test files load through tsx. Integration tests mostly wait on real
// processes and sockets, so files run a few at a time even on a 2-core machine.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const only = process.argv.slice(2);
const files = (dir) =>
  readdirSync(path.join(root, 'test', dir))
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => path.join('test', dir, f))
    .filter((f) => only.length === 0 || only.some((o) => f.includes(o)));

const all = [...files('unit'), ...files('integration')];
if (all.length === 0) {
  console.error(`no test files match ${only.join(' ')}`);
  process.exit(1);
}
const concurrency = process.env.TSGUN_TEST_CONCURRENCY ?? '3';
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-timeout=300000', ...all],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
  },
);
process.exit(result.status ?? 1);
