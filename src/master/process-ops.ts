/**
 * The arbiter's access to processes, behind a narrow seam so unit tests can drive the
 * arbiter's decisions without forking.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface ProcessOps {
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess;
  /** Send a signal; a process that is already gone is not an error. */
  kill(pid: number, signal: NodeJS.Signals): void;
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
};
