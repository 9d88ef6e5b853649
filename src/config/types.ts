/**
 * Value types of settings: how each is parsed from a string (command line, environment)
 * and checked when it comes from a config file. A parse failure throws `ValueProblem`
 * with the expected form; the caller adds the setting name and the source.
 */

export class ValueProblem extends Error {}

export interface ValueType<T> {
  /** Shown in `--help` and docs: `<int>`, `<seconds>`, ... */
  readonly placeholder: string;
  /** Human description of the accepted form, for error messages. */
  readonly expected: string;
  fromString(raw: string): T;
  fromConfig(raw: unknown): T;
  /** How a value is shown in `--print-config` and docs. */
  show(value: T): string;
  /** Repeatable on the command line (each use appends). */
  readonly repeatable?: boolean;
  /** A boolean flag that takes no argument on the command line. */
  readonly flag?: boolean;
}

function fail(expected: string, raw: unknown): never {
  const shown =
    typeof raw === 'string'
      ? JSON.stringify(raw)
      : typeof raw === 'function'
        ? 'a function'
        : (JSON.stringify(raw) ?? String(raw));
  throw new ValueProblem(`expected ${expected}, got ${shown}`);
}

export function int(min = 0, max = Number.MAX_SAFE_INTEGER): ValueType<number> {
  const expected = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
  const check = (n: number, raw: unknown): number => {
    if (!Number.isInteger(n) || n < min || n > max) fail(expected, raw);
    return n;
  };
  return {
    placeholder: '<int>',
    expected,
    fromString: (raw) => check(/^[+-]?\d+$/.test(raw.trim()) ? Number(raw) : NaN, raw),
    fromConfig: (raw) => (typeof raw === 'number' ? check(raw, raw) : fail(expected, raw)),
    show: String,
  };
}

/** Seconds, possibly fractional. */
export function seconds(min = 0): ValueType<number> {
  const expected = `a number of seconds >= ${min}`;
  const check = (n: number, raw: unknown): number => {
    if (!Number.isFinite(n) || n < min) fail(expected, raw);
    return n;
  };
  return {
    placeholder: '<seconds>',
    expected,
    fromString: (raw) => check(raw.trim() === '' ? NaN : Number(raw), raw),
    fromConfig: (raw) => (typeof raw === 'number' ? check(raw, raw) : fail(expected, raw)),
    show: String,
  };
}

export const bool: ValueType<boolean> = {
  placeholder: '',
  expected: 'true or false',
  flag: true,
  fromString(raw) {
    const v = raw.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    return fail(this.expected, raw);
  },
  fromConfig(raw) {
    return typeof raw === 'boolean' ? raw : fail(this.expected, raw);
  },
  show: String,
};

export function string(placeholder = '<string>'): ValueType<string> {
  const expected = 'a string';
  return {
    placeholder,
    expected,
    fromString: (raw) => raw,
    fromConfig: (raw) => (typeof raw === 'string' ? raw : fail(expected, raw)),
    show: (v) => JSON.stringify(v),
  };
}

/** A string that may be unset (`null` in files); the empty string also means unset. */
export function optionalString(placeholder = '<string>'): ValueType<string | null> {
  const expected = 'a string or null';
  return {
    placeholder,
    expected,
    fromString: (raw) => (raw === '' ? null : raw),
    fromConfig: (raw) =>
      raw === null || raw === undefined ? null : typeof raw === 'string' ? raw || null : fail(expected, raw),
    show: (v) => (v === null ? 'null' : JSON.stringify(v)),
  };
}

export function choice<const C extends string>(choices: readonly C[]): ValueType<C> {
  const expected = `one of ${choices.join(', ')}`;
  const check = (raw: unknown): C =>
    typeof raw === 'string' && (choices as readonly string[]).includes(raw) ? (raw as C) : fail(expected, raw);
  return {
    placeholder: `<${choices.join('|')}>`,
    expected,
    fromString: (raw) => check(raw.trim()),
    fromConfig: check,
    show: (v) => v,
  };
}

/**
 * A list of strings: repeatable on the command line; a string or an array of strings in
 * files. `itemCheck` validates each item (throwing ValueProblem).
 */
export function strings(placeholder: string, itemCheck?: (item: string) => void): ValueType<string[]> {
  const expected = 'a string or a list of strings';
  const check = (items: string[]): string[] => {
    for (const item of items) itemCheck?.(item);
    return items;
  };
  return {
    placeholder,
    expected,
    repeatable: true,
    fromString: (raw) => check([raw]),
    fromConfig(raw) {
      if (typeof raw === 'string') return check([raw]);
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return check([...raw]);
      return fail(expected, raw);
    },
    show: (v) => JSON.stringify(v),
  };
}

/** Parse `512MB`, `1.5GiB`, `4096` (bytes) into bytes; null means no limit. */
export function size(): ValueType<number | null> {
  const expected = 'a size such as 512MB, 1GB or a number of bytes (0 or null for none)';
  const units: Record<string, number> = {
    '': 1,
    b: 1,
    k: 1e3,
    kb: 1e3,
    kib: 1024,
    m: 1e6,
    mb: 1e6,
    mib: 1024 ** 2,
    g: 1e9,
    gb: 1e9,
    gib: 1024 ** 3,
  };
  const parse = (raw: unknown): number | null => {
    if (raw === null || raw === 0 || raw === '0') return null;
    if (typeof raw === 'number' && Number.isInteger(raw) && raw > 0) return raw;
    if (typeof raw !== 'string') return fail(expected, raw);
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(raw);
    const unit = m ? units[m[2]!.toLowerCase()] : undefined;
    if (!m || unit === undefined) return fail(expected, raw);
    return Math.round(Number(m[1]) * unit) || null;
  };
  return {
    placeholder: '<size>',
    expected,
    fromString: parse,
    fromConfig: parse,
    show: (v) => (v === null ? 'null' : String(v)),
  };
}

/** Any hook; hooks.ts has each one's signature. */
export type HookFunction = (...args: never[]) => unknown;

/** A function in a config file (hooks); cannot be given on the command line. */
export function hook<F extends HookFunction>(): ValueType<F | null> {
  const expected = 'a function';
  return {
    placeholder: '',
    expected,
    fromString: (raw) => fail('a function (hooks are set in a config file, not on the command line)', raw),
    fromConfig: (raw) =>
      raw === null || raw === undefined ? null : typeof raw === 'function' ? (raw as F) : fail(expected, raw),
    show: (v) => (v === null ? 'null' : `<function ${v.name || 'anonymous'}>`),
  };
}

/** A file mode mask: `0o027`, `"027"`, `"0o27"` (octal), or a number; null leaves the inherited mask. */
export function umask(): ValueType<number | null> {
  const expected = 'an octal mask such as 022 or 0o027';
  const parse = (raw: unknown): number | null => {
    if (raw === null) return null;
    if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0 && raw <= 0o777) return raw;
    if (typeof raw === 'string' && /^(0o)?[0-7]{1,4}$/i.test(raw.trim())) {
      const n = Number.parseInt(raw.trim().replace(/^0o/i, ''), 8);
      if (n <= 0o777) return n;
    }
    return fail(expected, raw);
  };
  return {
    placeholder: '<mask>',
    expected,
    fromString: parse,
    fromConfig: parse,
    show: (v) => (v === null ? 'null' : `0o${v.toString(8).padStart(3, '0')}`),
  };
}
