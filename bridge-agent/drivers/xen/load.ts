/**
 * A Xen host's CPU load from `xl list`: Xen counts each domain's CPU time (Domain-0 included), so the
 * CPU time used between two readings over the wall time between them and the host's CPUs is how busy
 * the host was. dom0's own load average would not see the guests, which run beside it, not in it.
 * Pure apart from the one reading it keeps.
 */
import type { XlListRow } from "./parse.ts";

type Reading = { atMs: number; cpuSeconds: Map<number, number> };

export class CpuTimeLoad {
  private last: Reading | undefined;

  /**
   * Takes a reading; returns the load since the previous one as a fraction of `nrCpus` (1 = every
   * CPU busy), or undefined for the first reading (or when no time has passed). A domain that started
   * since counts all its CPU time; one that went away counts nothing; a domain id reused by a new
   * domain with less CPU time than the old one had counts its own time.
   */
  sample(rows: readonly XlListRow[], nrCpus: number, atMs: number): number | undefined {
    const now: Reading = { atMs, cpuSeconds: new Map(rows.map((r) => [r.domid, r.cpuSeconds])) };
    const prev = this.last;
    this.last = now;
    if (!prev || !(atMs > prev.atMs) || !(nrCpus >= 1)) return undefined;
    let used = 0;
    for (const [domid, secs] of now.cpuSeconds) {
      const before = prev.cpuSeconds.get(domid);
      used += before === undefined || secs < before ? secs : secs - before;
    }
    return used / (((atMs - prev.atMs) / 1000) * nrCpus);
  }
}
