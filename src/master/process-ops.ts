/**
 * The master's access to processes, behind a narrow seam so unit tests can drive its
 * decisions without forking (test/unit/reexec.test.ts drives the USR2 upgrade through it).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface ProcessOps {
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess;
  /** Send a signal; a process that is already gone is not an error. */
  kill(pid: number, signal: NodeJS.Signals): void;
  /** Is this process running (see isAlive)? */
  alive(pid: number): boolean;
}

export const realProcessOps: ProcessOps = {
  spawn: (command, args, options) => spawn(command, args, options),
  kill(pid, signal) {
    try {
      process.kill(pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  },
  alive: (pid) => isAlive(pid),
};

/**
 * Is there a running process with this pid? A zombie (exited, not yet reaped by its
 * parent) answers kill(pid, 0) like a live one, so Linux's /proc state is checked too.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true;
  }
}
