/**
 * pino, set up the same way in the master and in workers. `pretty` prints Gunicorn-style
 * lines (`[time] [pid] [LEVEL] message`); `json` prints one pino object per line.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import type { Settings } from './config/settings.js';

export type { Logger } from 'pino';

const LEVELS: Record<Settings['loglevel'], pino.Level> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warning: 'warn',
  error: 'error',
  critical: 'fatal',
};

const LABELS: Record<string, string> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

function timestamp(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const tz = `${sign}${pad(Math.floor(Math.abs(off) / 60))}${pad(Math.abs(off) % 60)}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${tz}`;
}

const SKIP = new Set(['level', 'time', 'pid', 'msg', 'err', 'hostname', 'role', 'worker']);

const COLOURS: Record<string, string> = {
  TRACE: '2',
  DEBUG: '36',
  INFO: '32',
  WARNING: '33',
  ERROR: '31',
  CRITICAL: '1;31',
};
const paint = (code: string, text: string): string => `\x1b[${code}m${text}\x1b[0m`;

/**
 * Whether pretty lines to a stream are coloured: FORCE_COLOR (other than 0/false) forces it, a
 * non-empty NO_COLOR (no-color.org) turns it off, else a terminal has it. FORCE_COLOR wins, as in Node.
 */
export function wantsColour(isTTY: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return !['0', 'false'].includes(force.toLowerCase());
  if (env.NO_COLOR) return false;
  return isTTY;
}

/** Turn one pino JSON line into a human line (plus an error stack, if any). */
export function prettyLine(json: string, colour = false): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const extras = Object.entries(o)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const level = LABELS[String(o.level)] ?? String(o.level).toUpperCase();
  const time = `[${timestamp(Number(o.time))}]`;
  const label = `[${level}]`;
  const pid = `[${String(o.pid)}]`;
  const head = colour ? `${paint('2', time)} ${pid} ${paint(COLOURS[level] ?? '0', label)}` : `${time} ${pid} ${label}`;
  let line = `${head} ${String(o.msg ?? '')}${extras.length ? ` ${extras.join(' ')}` : ''}\n`;
  const err = o.err as { stack?: string } | undefined;
  if (err?.stack) line += `${err.stack}\n`;
  return line;
}

export interface LogTarget {
  logger: Logger;
  /** Reopen the log file (USR1 after logrotate renamed it). */
  reopen(): void;
  flush(): void;
}

/** The error log: to stderr (`-`) or a file, in the chosen format. */
export function createLogger(
  settings: Pick<Settings, 'loglevel' | 'log_format' | 'errorlog'>,
  bindings: Record<string, unknown> = {},
): LogTarget {
  const toStderr = settings.errorlog === '-';
  const dest = pino.destination({ dest: toStderr ? 2 : settings.errorlog, sync: true, mkdir: true, append: true });
  const pretty =
    settings.log_format === 'pretty' || (settings.log_format === 'auto' && toStderr && process.stderr.isTTY === true);
  const colour = pretty && toStderr && wantsColour(process.stderr.isTTY === true);
  const stream: DestinationStream = pretty ? { write: (line: string) => dest.write(prettyLine(line, colour)) } : dest;
  const logger = pino(
    {
      level: LEVELS[settings.loglevel],
      base: { pid: process.pid, ...bindings },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.epochTime,
    },
    stream,
  );
  return {
    logger,
    reopen: () => {
      if (!toStderr) dest.reopen();
    },
    flush: () => dest.flushSync(),
  };
}
