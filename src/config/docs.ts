/**
 * Renders `docs/settings.md` from the settings registry and `docs/errors.md` from the
 * error table. Pure: each function returns the whole page; `scripts/gen-docs.ts` writes
 * them and `test/unit/docs.test.ts` fails when the committed pages drift.
 */
import { ERRORS, ExitCode } from '../errors.js';
import { SECTIONS, SETTING_NAMES, getSetting, type Section, type Setting, type SettingName } from './settings.js';

const REGENERATE = 'Regenerate with `npm run docs`; do not edit by hand.';

/** One line of an exit status, for the errors page. A new exit status fails to compile until it is described here. */
const EXIT_MEANING: Record<keyof typeof ExitCode, string> = {
  OK: 'Clean stop.',
  RUNTIME: 'Runtime failure.',
  USAGE: 'Usage or config error: nothing was bound and no process was started.',
  WORKER_BOOT: 'A worker failed to boot at first start.',
  APP_LOAD: 'The app failed to load at first start.',
};

function code(text: string): string {
  // A code span that itself holds backticks needs a longer fence.
  return text.includes('`') ? `\`\` ${text} \`\`` : `\`${text}\``;
}

/** A table cell: pipes would end the cell, newlines the row. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function isHook(s: Setting<unknown>): boolean {
  return s.section === 'Server hooks';
}

function flagsOf(s: Setting<unknown>): string {
  if (!s.cli) return isHook(s) ? 'none (config file only)' : 'none';
  return s.cli.map((f) => code(s.type.flag ? f : `${f} ${s.type.placeholder}`)).join(', ');
}

function typeOf(s: Setting<unknown>): string {
  if (s.type.flag) return 'boolean (a flag on the command line)';
  if (isHook(s)) return 'function';
  return `${code(s.type.placeholder)}, ${s.type.expected}${s.type.repeatable ? ' (repeatable on the command line)' : ''}`;
}

function defaultOf(s: Setting<unknown>): string {
  return s.defaultDoc ?? code(s.type.show(s.default));
}

function renderSetting(name: SettingName, heading: string): string {
  const s = getSetting(name);
  const rows = [
    `- **Command line:** ${flagsOf(s)}`,
    `- **Environment:** ${s.env ? code(s.env) : 'none'}`,
    `- **Config key:** ${s.cliOnly ? 'none (command line only)' : code(name)}`,
    `- **Type:** ${typeOf(s)}`,
    `- **Default:** ${defaultOf(s)}`,
  ];
  const text = [s.short, s.doc].filter(Boolean).join('\n\n');
  return `${heading}\n\n${rows.join('\n')}\n\n${text}\n`;
}

/** The environment variables settings read, in registry order. */
function envVars(): string[] {
  return SETTING_NAMES.map((name) => getSetting(name).env).filter((env): env is string => env !== undefined);
}

function sectionSettings(section: Section): SettingName[] {
  return SETTING_NAMES.filter((name) => getSetting(name).section === section);
}

/**
 * Headings and their anchors as GitHub makes them: lower case, punctuation dropped,
 * spaces to hyphens, and `-1`, `-2` on repeats (the "Config" section and the `config`
 * setting share a slug).
 */
class Headings {
  private readonly seen = new Map<string, number>();

  /** The anchor the next heading with this text will get. */
  add(text: string): string {
    const base = text
      .toLowerCase()
      .replace(/[^\w\- ]/g, '')
      .replace(/ /g, '-');
    const n = this.seen.get(base) ?? 0;
    this.seen.set(base, n + 1);
    return n === 0 ? base : `${base}-${n}`;
  }
}

/** The whole of `docs/settings.md`. */
export function renderSettingsDoc(): string {
  const out: string[] = [];
  out.push(`<!-- Generated from src/config/settings.ts by scripts/gen-docs.ts. ${REGENERATE} -->`);
  out.push('# Settings\n');
  out.push(
    [
      'Every setting has one name. In a config file (`-c FILE`, or `./tsgun.conf.ts` and friends) it is the key,',
      'in snake_case as in Gunicorn; on the command line it is the flag shown; a few also read an environment variable.',
      'Any flag can also be given in `TSGUN_CMD_ARGS` (for example `TSGUN_CMD_ARGS="-w 4 --log-level debug"`).',
      '',
      `Precedence, lowest first: default < config file < environment (${envVars()
        .map((v) => code(v))
        .join(', ')}, then \`TSGUN_CMD_ARGS\`) < command line.`,
      '`tsgun --print-config` (with the rest of your flags) shows every value and where it came from. An unknown key or a wrong value stops tsgun',
      'before anything is bound, with a message that names the key and the expected form.',
      '',
      'Config files are typed with `defineConfig`:',
      '',
      '```ts',
      "import { defineConfig } from 'tsgun';",
      '',
      "export default defineConfig({ bind: ['127.0.0.1:8000'], workers: 2 });",
      '```',
      '',
      'See also [errors.md](errors.md) for the error codes and exit statuses.',
      '',
    ].join('\n'),
  );
  // Anchors follow document order: the title and "Contents" first, then each section and its settings.
  const headings = new Headings();
  headings.add('Settings');
  headings.add('Contents');
  const sections = SECTIONS.map((section) => ({
    section,
    anchor: headings.add(section),
    settings: sectionSettings(section).map((name) => ({ name, anchor: headings.add(name) })),
  })).filter((s) => s.settings.length > 0);
  out.push('## Contents\n');
  for (const { section, anchor, settings } of sections) {
    out.push(`- [${section}](#${anchor}): ${settings.map((s) => `[${s.name}](#${s.anchor})`).join(', ')}`);
  }
  out.push('');
  for (const { section, settings } of sections) {
    out.push(`## ${section}\n`);
    if (section === 'Server hooks') {
      out.push(
        [
          'Hooks are functions in a config file (`.ts`, `.mts`, `.js`, `.mjs`, `.cjs`), under the names Gunicorn uses.',
          'Worker-side hooks run in each worker, which imports the config file again to get them.',
          'A master-side hook that throws is logged and tsgun carries on; a throw in `post_fork` or `post_worker_init`',
          "fails the worker's boot.\n",
        ].join('\n'),
      );
    }
    for (const { name } of settings) out.push(renderSetting(name, `### ${name}`));
  }
  return `${out.join('\n').trimEnd()}\n`;
}

/** The whole of `docs/errors.md`. */
export function renderErrorsDoc(): string {
  const out: string[] = [];
  out.push(`<!-- Generated from src/errors.ts by scripts/gen-docs.ts. ${REGENERATE} -->`);
  out.push('# Errors\n');
  out.push(
    [
      'Every error a user can cause prints one line on stderr starting `Error:` that says what is wrong and what to do,',
      'and tsgun exits with the status below. Each kind of error has a stable code, listed here with its exit status;',
      'the `Error:` line itself carries only the message.',
      '',
    ].join('\n'),
  );
  out.push('## Exit statuses\n');
  out.push('| Status | Meaning |');
  out.push('|---|---|');
  for (const [key, status] of Object.entries(ExitCode) as Array<[keyof typeof ExitCode, number]>) {
    out.push(`| ${status} | ${cell(EXIT_MEANING[key])} |`);
  }
  out.push('');
  out.push('## Error codes\n');
  out.push('| Code | Exit status | Description |');
  out.push('|---|---|---|');
  for (const [name, kind] of Object.entries(ERRORS)) {
    out.push(`| ${code(name)} | ${kind.exit} | ${cell(kind.doc)} |`);
  }
  return `${out.join('\n').trimEnd()}\n`;
}
