/** The pidfile: written once the master starts, removed at exit if it still names us. */
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TsgunError } from '../errors.js';
import { isAlive } from './process-ops.js';


export function readPid(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export class Pidfile {
  readonly path: string;

  constructor(
    file: string,
    private readonly pid = process.pid,
  ) {
    this.path = path.resolve(file);
  }

  /** Write our pid; refuse if the file names another live process. */
  create(): void {
    const existing = readPid(this.path);
    if (existing !== null && existing !== this.pid && isAlive(existing)) {
      throw new TsgunError('TSGUN_ERR_PIDFILE', `pidfile ${this.path} names a running process (pid ${existing}); stop that master or use another --pid`);
    }
    try {
      mkdirSync(path.dirname(this.path), { recursive: true });
      const tmp = `${this.path}.${this.pid}.tmp`;
      writeFileSync(tmp, `${this.pid}\n`);
      renameSync(tmp, this.path);
    } catch (err) {
      throw new TsgunError('TSGUN_ERR_PIDFILE', `cannot write pidfile ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Remove the file, unless it now names another master (a USR2 successor). */
  unlink(): void {
    if (readPid(this.path) !== this.pid) return;
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone.
    }
  }
}
