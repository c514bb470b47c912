/**
 * Which processes belong to a test-bed host, exactly. A host's processes are found by its mount
 * namespace, which is only safe while that namespace is provably still the host's: this process
 * pins it (an open fd on /proc/<holder>/ns/mnt) from start to stop, and pids recorded in the state
 * carry their start time, so a reused pid or a reused namespace number is never taken for the host's.
 */
import { closeSync, openSync, readlinkSync } from "node:fs";
import type { HostState } from "./host.ts";
import { commandOf, mountNamespaceOf, pidAlive, pidExists, processesIn, startTimeOf } from "./proc.ts";

/** One process of a host, for listing and for the check that nothing is left. */
export type HostProcess = { host: string; pid: number; command: string };

/** The host's processes now; none once the host is stopped (its namespace no longer pinned). */
export function hostProcesses(h: HostState): HostProcess[] {
  if (!isPinned(h)) return [];
  return processesIn(h.mountNs).map((pid) => ({ host: h.id, pid, command: commandOf(pid) }));
}

/** The holder and daemons recorded in the state. */
export function recordedPids(h: HostState): number[] {
  return [h.holderPid, ...Object.values(h.daemons)];
}

/** Whether `pid` is still the (live) process recorded under it, not a later one reusing the pid. */
export function isOurs(h: HostState, pid: number): boolean {
  return pidAlive(pid) && startTimeOf(pid) === h.startTimes[pid];
}

/**
 * Open fds on each host's /proc/<holder>/ns/mnt, by namespace. While one is open the kernel keeps
 * the namespace, so its `mnt:[inode]` cannot be reused by a namespace someone else makes, and
 * finding a host's processes by namespace stays exact even after its holder has died.
 */
const pins = new Map<string, number>();

/** Pins the host's namespace (if its holder is still the recorded process); true if pinned. */
export function pin(h: HostState): boolean {
  if (pins.has(h.mountNs)) return true;
  if (!isOurs(h, h.holderPid)) return false;
  try {
    const fd = openSync(`/proc/${h.holderPid}/ns/mnt`, "r");
    if (readlinkSync(`/proc/self/fd/${fd}`) !== h.mountNs) {
      closeSync(fd);
      return false;
    }
    pins.set(h.mountNs, fd);
    return true;
  } catch {
    return false;
  }
}

export function unpin(h: HostState): void {
  const fd = pins.get(h.mountNs);
  if (fd === undefined) return;
  closeSync(fd);
  pins.delete(h.mountNs);
}

/** Whether this process holds the host's namespace open. */
export function isPinned(h: HostState): boolean {
  return pins.has(h.mountNs);
}

/**
 * Whether `pid` may still be a process of the namespace `ns`: it exists (a zombie not yet reaped
 * counts) and is not known to be elsewhere. A process that is exiting has already dropped its
 * namespaces (its ns link is unreadable) but is not gone; a pid seen in another namespace was reused.
 */
export function stillIn(ns: string, pid: number): boolean {
  if (!pidExists(pid)) return false;
  const now = mountNamespaceOf(pid);
  return now === undefined || now === ns;
}
