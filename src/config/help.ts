/**
 * `tsgun --help`, built from the settings registry: options grouped under the registry's
 * sections (as Gunicorn's settings page is), the control subcommands listed with a line
 * each, and every line wrapped to fit 100 columns.
 */
import { getSetting, SECTIONS, SETTING_NAMES, type SettingName } from './settings.js';

export const HELP_WIDTH = 100;
const FLAGS_WIDTH = 32;

/** The subcommands, one line each; `tsgun help COMMAND` and `tsgun COMMAND --help` say more. */
export const SUBCOMMANDS: ReadonlyArray<readonly [usage: string, summary: string]> = [
  ['status [--json | --watch]', 'show the master and its workers; --watch refreshes a live table every second'],
  ['reload', 'reload as HUP does, and wait for the new generation to be ready'],
  ['scale <count>', 'set the number of workers: N, +N or -N'],
  ['stop [--quick]', 'stop the master gracefully (as TERM does) and wait for it to exit'],
  ['help [command]', 'show this help, or the help of one command'],
];

/** Split `text` into lines of at most `width` characters, breaking at spaces. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/** `  flags  description`, the description wrapped in its column (or below long flags). */
export function item(flags: string, description: string, flagsWidth = FLAGS_WIDTH): string {
  const indent = ' '.repeat(2 + flagsWidth + 2);
  const body = wrap(description, HELP_WIDTH - indent.length);
  const first = `  ${flags}`;
  if (first.length > indent.length - 2) return [first, ...body.map((l) => indent + l)].join('\n');
  return body.map((l, i) => (i === 0 ? first.padEnd(indent.length) + l : indent + l)).join('\n');
}

function describe(name: SettingName): string {
  const s = getSetting(name);
  const notes: string[] = [];
  const shownDefault =
    s.defaultDoc ??
    (s.default === null || (Array.isArray(s.default) && s.default.length === 0) || s.default === false
      ? null
      : s.type.show(s.default));
  if (shownDefault !== null) notes.push(`default: ${shownDefault}`);
  if (s.env) notes.push(`env: ${s.env}`);
  const text = notes.length ? `${s.short} (${notes.join('; ')})` : s.short;
  return text.replace(/`/g, '');
}

export function flagsOf(name: SettingName): string {
  const s = getSetting(name);
  return s.type.flag ? s.cli!.join(', ') : `${s.cli!.join(', ')} ${s.type.placeholder}`;
}

/** The whole `tsgun --help` text. */
export function formatHelp(): string {
  const out: string[] = [
    'Usage: tsgun [options] APP',
    '       tsgun <command> [options]',
    '',
    'Run a Node.js HTTP app under a master process with a pool of workers.',
    'APP is MODULE[:ATTR], for example main:app or src/server.ts:createApp().',
    '',
    'Commands (for a running master):',
    ...SUBCOMMANDS.map(([usage, summary]) => item(usage, summary)),
    '',
    'General:',
    item('-h, --help', 'show this help and exit'),
    item('-v, --version', 'print the version and exit'),
  ];
  for (const section of SECTIONS) {
    const names = SETTING_NAMES.filter((n) => getSetting(n).section === section && getSetting(n).cli);
    if (names.length === 0) continue;
    out.push('', `${section}:`, ...names.map((n) => item(flagsOf(n), describe(n))));
  }
  out.push(
    '',
    "Every option is also a config-file key; see docs/settings.md. `tsgun help COMMAND` shows a command's options.",
  );
  return (
    out
      .join('\n')
      .split('\n')
      .flatMap((l) => (l.length > HELP_WIDTH ? wrap(l, HELP_WIDTH) : [l]))
      .join('\n') + '\n'
  );
}
