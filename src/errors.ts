/**
 * Every error a user can cause, in one table with stable codes. Only `bin/tsgun`
 * prints them (`Error: <message>`) and turns them into exit statuses.
 */

/** Exit statuses of the tsgun command (DESIGN.md, "Exit statuses and errors"). */
export const ExitCode = {
  OK: 0,
  RUNTIME: 1,
  USAGE: 2,
  WORKER_BOOT: 3,
  APP_LOAD: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** What a tsgun command hands `bin/tsgun`: the exit status, and text for stdout (help, version, reports). */
export interface CliResult {
  code: number;
  output?: string;
}

interface ErrorKind {
  exit: ExitCode;
  doc: string;
}

/** Stable error codes. `docs/errors.md` lists them; a unit test checks the two agree. */
export const ERRORS = {
  TSGUN_ERR_USAGE: {
    exit: ExitCode.USAGE,
    doc: 'The command line is malformed (unknown flag, missing value, missing APP).',
  },
  TSGUN_ERR_CONFIG_FILE: {
    exit: ExitCode.USAGE,
    doc: 'The config file is missing, unreadable, or fails to parse or import.',
  },
  TSGUN_ERR_CONFIG_KEY: { exit: ExitCode.USAGE, doc: 'The config file names a setting that does not exist.' },
  TSGUN_ERR_CONFIG_VALUE: { exit: ExitCode.USAGE, doc: 'A setting has a value of the wrong type or out of range.' },
  TSGUN_ERR_APP_SPEC: { exit: ExitCode.USAGE, doc: 'The APP argument is not of the form MODULE[:ATTR].' },
  TSGUN_ERR_BIND: {
    exit: ExitCode.RUNTIME,
    doc: 'A socket cannot be bound (address in use, permission denied, not a socket).',
  },
  TSGUN_ERR_PIDFILE: { exit: ExitCode.RUNTIME, doc: 'The pidfile cannot be written, or names a running master.' },
  TSGUN_ERR_WORKER_BOOT: { exit: ExitCode.WORKER_BOOT, doc: 'A worker failed to boot at first start.' },
  TSGUN_ERR_APP_LOAD: {
    exit: ExitCode.APP_LOAD,
    doc: 'The app failed to load at first start: missing module or attribute, a throw at import, no known shape.',
  },
  TSGUN_ERR_WORKER_CLASS: {
    exit: ExitCode.WORKER_BOOT,
    doc: 'The worker class cannot be loaded or does not implement the worker interface.',
  },
  TSGUN_ERR_RUNTIME: { exit: ExitCode.RUNTIME, doc: 'The master failed while running.' },
} as const satisfies Record<string, ErrorKind>;

export type ErrorCode = keyof typeof ERRORS;

/** An error the user can act on: its message is the whole `Error:` line, minus the prefix. */
export class TsgunError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; exitCode?: ExitCode }) {
    super(message, options);
    this.name = 'TsgunError';
    this.code = code;
    this.exitCode = options?.exitCode ?? ERRORS[code].exit;
  }
}

export function isTsgunError(err: unknown): err is TsgunError {
  return err instanceof TsgunError;
}

/** One line describing an arbitrary thrown value, for embedding in an `Error:` line. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const name = err.name && err.name !== 'Error' ? `${err.name}: ` : '';
    const where = errorLocation(err);
    const message = err.message
      .split('\n')
      .map((s) => s.trim())
      .filter(Boolean)
      .join(' ');
    return `${name}${message}${where ? ` (at ${where})` : ''}`;
  }
  return String(err);
}

/**
 * Where a syntax error happened. ESM syntax errors carry the location only in the first
 * line of the stack ("file:///app.ts:3"), not in the message.
 */
function errorLocation(err: Error): string | undefined {
  if (err.name !== 'SyntaxError' || !err.stack) return undefined;
  const first = err.stack.split('\n', 1)[0] ?? '';
  const m = /^(file:\/\/)?(\/[^\s]+:\d+)$/.exec(first);
  return m?.[2];
}
