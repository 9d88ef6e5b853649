/**
 * CPU and memory of the workers, sampled every `stats_interval` for `tsgun status`, the
 * metrics and `max_worker_memory`. On Linux they come straight from /proc: two small reads
 * per worker, and no child process (pidusage runs `getconf` twice on its first call, as
 * children of the master, and costs the master a few milliseconds to load). On other
 * systems (a laptop running `--reload`), pidusage.
 */
import { readFile } from 'node:fs/promises';

export interface Usage {
  /** Percent of one CPU since the previous sample (since the process started, on the first). */
  cpu: number;
  /** Resident set size, bytes. */
  memory: number;
}

/** /proc/PID/stat counts CPU time in clock ticks: USER_HZ, 100 a second on Linux. */
const TICKS_PER_SECOND = 100;

/** Per pid: CPU ticks and the time (seconds since boot) of the previous sample. */
const previous = new Map<number, { ticks: number; at: number }>();

async function procUsage(pid: number, uptime: number): Promise<Usage> {
  const [stat, status] = await Promise.all([
    readFile(`/proc/${pid}/stat`, 'latin1'),
    readFile(`/proc/${pid}/status`, 'latin1'),
  ]);
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  const before = previous.get(pid) ?? { ticks: 0, at: Number(fields[19]) / TICKS_PER_SECOND }; // starttime (field 22)
  previous.set(pid, { ticks, at: uptime });
  const seconds = uptime - before.at;
  const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return {
    cpu: seconds > 0 ? ((ticks - before.ticks) / TICKS_PER_SECOND / seconds) * 100 : 0,
    memory: rss ? Number(rss[1]) * 1024 : 0,
  };
}

/** Usage of each live pid; a process that exited between listing and sampling is left out. */
export async function sampleUsage(pids: readonly number[]): Promise<Map<number, Usage>> {
  const out = new Map<number, Usage>();
  if (process.platform !== 'linux') {
    const { default: pidusage } = await import('pidusage');
    for (const pid of pids) {
      const u = await pidusage(pid).catch(() => null);
      if (u) out.set(pid, { cpu: u.cpu, memory: u.memory });
    }
    return out;
  }
  const uptime = Number((await readFile('/proc/uptime', 'latin1')).split(' ')[0]);
  await Promise.all(
    pids.map(async (pid) => {
      const u = await procUsage(pid, uptime).catch(() => null);
      if (u) out.set(pid, u);
    }),
  );
  for (const pid of previous.keys()) if (!pids.includes(pid)) previous.delete(pid);
  return out;
}
