/**
 * The pidfile: written once the master starts, removed at exit if it still names us. A USR2
 * upgrade moves it aside to `PIDFILE.oldbin` for the new master, and back if that one exits.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { ExitCode, TsgunError } from '../errors.js';
import { isAlive } from './process-ops.js';

export function readPid(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

const TEMP_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_WRONLY;

export class Pidfile {
  /** The configured path, where the file lives except during a USR2 upgrade. */
  readonly configured: string;
  private current: string;

  constructor(
    file: string,
    private readonly pid = process.pid,
  ) {
    this.configured = this.current = path.resolve(file);
  }

  /** Where the file is now: the configured path, or where rename() moved it. */
  get path(): string {
    return this.current;
  }

  /** Write our pid; refuse if the file names another live process, or is a link. */
  create(): void {
    let existing;
    try {
      existing = lstatSync(this.path);
    } catch {
      existing = null;
    }
    if (existing && !existing.isFile()) {
      const what = existing.isSymbolicLink() ? 'a symbolic link' : 'not a regular file';
      const message = `pidfile ${this.path} is ${what}; remove it or use another --pid`;
      throw new TsgunError('TSGUN_ERR_PIDFILE', message, { exitCode: ExitCode.USAGE });
    }
    const other = readPid(this.path);
    if (other !== null && other !== this.pid && isAlive(other)) {
      const message = `pidfile ${this.path} names a running process (pid ${other}); stop that master or use another --pid`;
      throw new TsgunError('TSGUN_ERR_PIDFILE', message);
    }
    let tmp: string | null = null;
    try {
      mkdirSync(path.dirname(this.path), { recursive: true });
      // Others may write to the pidfile's directory: a temporary file with a name they can
      // guess could be their symlink, and root would write through it.
      const fd = openTemp(this.path, (name) => (tmp = name));
      try {
        writeSync(fd, `${this.pid}\n`);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp!, this.path);
    } catch (err) {
      if (tmp) unlinkQuietly(tmp);
      throw new TsgunError('TSGUN_ERR_PIDFILE', `cannot write pidfile ${this.path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /**
   * Move the file to `to`, content and all, in one rename(2): there is no moment without a
   * pidfile. Only a regular file is moved, as create() only writes one: a link found at the
   * path now was put there by someone else. rename(2) replaces a link at `to` without following it.
   */
  rename(to: string): void {
    const target = path.resolve(to);
    try {
      if (!lstatSync(this.current).isFile()) throw new Error(`${this.current} is not a regular file`);
      renameSync(this.current, target);
    } catch (err) {
      throw new TsgunError(
        'TSGUN_ERR_PIDFILE',
        `cannot rename pidfile ${this.current} to ${target}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.current = target;
  }

  /** Move the file back to its configured path after rename() (the USR2 successor exited). */
  restore(): void {
    if (this.current !== this.configured) this.rename(this.configured);
  }

  /** Remove the file, unless it now names another master (a USR2 successor). */
  unlink(): void {
    if (readPid(this.path) !== this.pid) return;
    unlinkQuietly(this.path);
  }
}

/** A new file next to `file`, created exclusively, never through a link. */
function openTemp(file: string, named: (tmp: string) => void): number {
  for (let attempt = 0; ; attempt++) {
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      const fd = openSync(tmp, TEMP_FLAGS, 0o644);
      named(tmp);
      return fd;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 10) throw err;
    }
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Already gone.
  }
}
