import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../helpers.js';

test('the LICENSE file is MIT, as package.json says, and npm pack ships it', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { license: string };
  assert.equal(pkg.license, 'MIT');
  assert.match(readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) 2026 tsgun contributors\n/);
  // --ignore-scripts: prepack would remove dist/.
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const [packed] = JSON.parse(out) as Array<{ files: Array<{ path: string }> }>;
  assert.ok(packed!.files.some((f) => f.path === 'LICENSE'), 'LICENSE is in the tarball');
});
