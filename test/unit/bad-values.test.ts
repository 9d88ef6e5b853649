/**
 * Every config-file setting rejects each JSON kind it does not take, as a usage error
 * (exit 2) that names the key and the file. The kinds a setting takes follow from its
 * default: a number, a boolean, a list, a string; settings that default to null take
 * neither a boolean, nor a list, nor an object.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkFileValues } from '../../src/config/resolve.js';
import { getSetting, SETTING_NAMES } from '../../src/config/settings.js';
import { ExitCode, TsgunError } from '../../src/errors.js';

const KINDS: Record<string, unknown> = {
  string: 'garbage::x',
  number: 1.5,
  boolean: true,
  list: [{}],
  object: { x: 1 },
};

function kindOf(value: unknown): string {
  return Array.isArray(value) ? 'list' : value === null ? 'null' : typeof value;
}

/** The JSON kinds a setting with this default does not take. */
function wrongKinds(def: unknown): string[] {
  switch (kindOf(def)) {
    case 'number':
      return ['string', 'boolean', 'list', 'object'];
    case 'boolean':
      return ['string', 'number', 'list', 'object'];
    case 'list':
      return ['number', 'boolean', 'object'];
    case 'string':
      return ['number', 'boolean', 'list', 'object'];
    default:
      return ['boolean', 'list', 'object'];
  }
}

for (const name of SETTING_NAMES) {
  const s = getSetting(name);
  if (s.cliOnly) continue;
  const wrong = wrongKinds(s.default);
  test(`${name} (default ${JSON.stringify(s.default)}) rejects a ${wrong.join(', a ')} in a config file`, () => {
    for (const kind of wrong) {
      assert.throws(
        () => checkFileValues({ [name]: KINDS[kind] }, '/etc/tsgun/conf.json'),
        (err: unknown) => {
          assert.ok(err instanceof TsgunError, `${kind}: ${String(err)}`);
          assert.equal(err.exitCode, ExitCode.USAGE);
          assert.match(err.message, new RegExp(`^config file /etc/tsgun/conf\\.json: setting "${name}" expected `));
          return true;
        },
        `${name} took a ${kind}`,
      );
    }
  });
}
