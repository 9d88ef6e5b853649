import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../helpers.js';

/** What `npm pack` would put in the tarball (--ignore-scripts: prepack would remove dist/). */
function packedFiles(): Set<string> {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const [packed] = JSON.parse(out) as Array<{ files: Array<{ path: string }> }>;
  return new Set(packed!.files.map((f) => f.path));
}

test('the LICENSE file is MIT, as package.json says, and npm pack ships it', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { license: string };
  assert.equal(pkg.license, 'MIT');
  assert.match(
    readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'),
    /^MIT License\n\nCopyright \(c\) 2026 tsgun contributors\n/,
  );
  assert.ok(packedFiles().has('LICENSE'), 'LICENSE is in the tarball');
});

// A blocked worker's stack is mapped through source maps (src/worker/source-map.cts), tsgun's
// own frames included: each source a shipped map names must be shipped too, or the
// WORKER TIMEOUT line (and a debugger) would point at files that are not there.
test('every source that a shipped dist/*.map names is in the tarball', () => {
  const files = packedFiles();
  const maps = [...files].filter((f) => f.startsWith('dist/') && f.endsWith('.map'));
  assert.ok(maps.length > 0, 'the tarball ships source maps');
  const missing: string[] = [];
  for (const map of maps) {
    const { sources, sourceRoot = '' } = JSON.parse(readFileSync(path.join(ROOT, map), 'utf8')) as {
      sources: string[];
      sourceRoot?: string;
    };
    for (const source of sources) {
      const packed = path.posix.normalize(path.posix.join(path.posix.dirname(map), sourceRoot, source));
      if (!files.has(packed)) missing.push(`${map} names ${packed}`);
    }
  }
  assert.deepEqual(missing, []);
});
