import { readFileSync } from 'node:fs';

/** Linux's USER_HZ, the unit of the CPU times in /proc/<pid>/stat (100 on every Linux build). */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * A process's user + system CPU time so far in ms, from /proc/<pid>/stat; undefined where there is
 * no /proc or no such process. A read of /proc costs microseconds and never waits on the process.
 */
export function processCpuMs(pid: number): number | undefined {
  try {
    // Fields after the command name (which may hold spaces and parentheses, so cut after the last
    // closing one): utime and stime are the 14th and 15th of the line, the 12th and 13th after it.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
    const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
    return Number.isFinite(ms) ? ms : undefined;
  } catch {
    return undefined;
  }
}
