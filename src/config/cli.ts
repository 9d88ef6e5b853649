/**
 * The command line, built from the settings registry: every setting with `cli` flags
 * becomes a commander option whose help shows its default and environment variable.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { TsgunError } from '../errors.js';
import { flagsOf, formatHelp } from './help.js';
import { getSetting, SETTING_NAMES, type SettingName } from './settings.js';
import { ValueProblem } from './types.js';

export interface ParsedArgs {
  /** Values given on this command line, already parsed to their types. */
  values: Partial<Record<SettingName, unknown>>;
  /** The APP positional argument, if given. */
  app: string | null;
}

/** Output of `--help` / `--version`, returned rather than printed (only bin/ prints). */
export class InfoRequested extends Error {
  constructor(readonly output: string) {
    super('info requested');
  }
}

/** The commander program for `tsgun [options] [APP]`. */
export function buildProgram(version: string): { program: Command; attrToSetting: Map<string, SettingName> } {
  const program = new Command('tsgun')
    .usage('[options] APP')
    .description(
      'Run a Node.js HTTP app under a master process with a pool of workers.\nAPP is MODULE[:ATTR], for example main:app or src/server.ts:createApp().',
    )
    .argument('[APP]', 'the app to serve, as MODULE[:ATTR]')
    .version(version, '-v, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show this help and exit')
    .exitOverride()
    .showSuggestionAfterError(true)
    .allowExcessArguments(false)
    .configureOutput({ writeOut: () => {}, writeErr: () => {} });

  const attrToSetting = new Map<string, SettingName>();
  for (const name of SETTING_NAMES) {
    const s = getSetting(name);
    if (!s.cli) continue;
    const option = new Option(flagsOf(name), s.short);
    if (!s.type.flag) {
      option.argParser((raw: string, previous: unknown) => {
        let value: unknown;
        try {
          value = s.type.fromString(raw);
        } catch (err) {
          if (err instanceof ValueProblem) throw new InvalidArgumentError(err.message);
          throw err;
        }
        return s.type.repeatable && Array.isArray(previous)
          ? [...(previous as unknown[]), ...(value as unknown[])]
          : value;
      });
    }
    program.addOption(option);
    attrToSetting.set(option.attributeName(), name);
  }
  return { program, attrToSetting };
}

/** Parse argv (without `node` and the script) into setting values. */
export function parseArgs(argv: readonly string[], version: string, where = 'command line'): ParsedArgs {
  const { program, attrToSetting } = buildProgram(version);
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help')
        throw new InfoRequested(formatHelp());
      if (err.code === 'commander.version') throw new InfoRequested(`${version}\n`);
      const message = err.message.replace(/^error: /, '').replace(/\n+/g, ' ');
      throw new TsgunError('TSGUN_ERR_USAGE', `${where}: ${message}; see tsgun --help`);
    }
    throw err;
  }
  const opts = program.opts();
  const values: Partial<Record<SettingName, unknown>> = {};
  for (const [attr, value] of Object.entries(opts)) {
    const name = attrToSetting.get(attr);
    // commander gives a `--no-x` flag an implicit default of true; only what was typed counts.
    if (name && value !== undefined && program.getOptionValueSource(attr) === 'cli') values[name] = value;
  }
  return { values, app: program.args[0] ?? null };
}

/** Split a `TSGUN_CMD_ARGS` string into words, honouring single and double quotes and backslashes. */
export function splitArgs(input: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < input.length) word += input[++i];
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < input.length) {
      word += input[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new TsgunError('TSGUN_ERR_USAGE', `TSGUN_CMD_ARGS has an unclosed ${quote} quote`);
  if (inWord) words.push(word);
  return words;
}
