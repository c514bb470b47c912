/**
 * Stopping a test-bed host: guests destroyed through its own libvirtd, then its processes ended by
 * pid (SIGTERM, SIGKILL after a grace period), the holder last.
 */
import { execIn, type HostState, inNamespace } from "./host.ts";
import {
  type HostProcess,
  hostProcesses,
  isOurs,
  isPinned,
  pin,
  recordedPids,
  stillIn,
  unpin,
} from "./ownership.ts";
import { commandOf, mountNamespaceOf, pidAlive, pollUntil, processesIn, run, signalIn } from "./proc.ts";

/** SIGTERM to each pid still in the namespace, SIGKILL after `graceMs`; resolves once all are gone. */
async function endPids(ns: string, pids: number[], graceMs: number): Promise<void> {
  for (const pid of pids) signalIn(ns, pid, "SIGTERM");
  const gone = () => pids.every((pid) => !stillIn(ns, pid));
  if (await pollUntil(gone, graceMs)) return;
  for (const pid of pids) signalIn(ns, pid, "SIGKILL");
  await pollUntil(gone, 5_000);
}

/**
 * Stops a host: destroys the guests still running (through its libvirtd), ends sshd, libvirtd and
 * virtlogd by pid, then every other process left in its namespace (qemu, ssh logins) and last the
 * holder, which takes the namespace and its mounts with it. Returns what could not be ended.
 */
export async function stopHost(h: HostState): Promise<HostProcess[]> {
  if (!pin(h)) return endRecorded(h);
  try {
    return await stopPinned(h);
  } finally {
    unpin(h);
  }
}

async function stopPinned(h: HostState): Promise<HostProcess[]> {
  const libvirtd = h.daemons.libvirtd;
  if (libvirtd && pidAlive(libvirtd) && mountNamespaceOf(libvirtd) === h.mountNs) {
    const virsh = (...args: string[]) =>
      execIn(h, ["virsh", "-c", "qemu:///system", ...args], { timeoutMs: 20_000 }).catch(() => undefined);
    const running = await virsh("list", "--name");
    const names = (running?.stdout ?? "").split("\n").filter((n) => n.trim());
    await Promise.all(names.map((name) => virsh("destroy", name.trim())));
  }
  await endPids(h.mountNs, [h.daemons.sshd, h.daemons.libvirtd, h.daemons.virtlogd].filter(isPid), 5_000);
  const others = processesIn(h.mountNs).filter((pid) => pid !== h.holderPid);
  await endPids(h.mountNs, others, 3_000);
  // Explicit unmounts, for tidiness: the kernel would drop them with the namespace anyway.
  if (pidAlive(h.holderPid) && mountNamespaceOf(h.holderPid) === h.mountNs) {
    const targets =
      "/etc/ssh/ssh_config /etc/libvirt /var/cache/libvirt /var/log/libvirt /var/lib/libvirt /run/libvirt";
    await run("nsenter", inNamespace(h.holderPid, ["sh", "-c", `umount ${targets}`]), { timeoutMs: 10_000 });
  }
  await endPids(h.mountNs, processesIn(h.mountNs), 3_000);
  return hostProcesses(h);
}

/**
 * The namespace is gone (or not provably this host's: its holder died and nothing pins it), so its
 * number may already name another one: end only the recorded pids that still have their start time.
 */
async function endRecorded(h: HostState): Promise<HostProcess[]> {
  const mine = () => recordedPids(h).filter((pid) => isOurs(h, pid));
  for (const pid of mine()) process.kill(pid, "SIGKILL");
  await pollUntil(() => mine().length === 0, 5_000);
  return mine().map((pid) => ({ host: h.id, pid, command: commandOf(pid) }));
}

/**
 * Synchronous last resort (process 'exit'): SIGKILL every process of the host, the holder last, after
 * a short wait for it to reap the others (else they would linger as zombies of pid 1).
 */
export function killHostNow(h: HostState): void {
  if (!isPinned(h)) return;
  const others = processesIn(h.mountNs).filter((pid) => pid !== h.holderPid);
  for (const pid of others) signalIn(h.mountNs, pid, "SIGKILL");
  const deadline = Date.now() + 2_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (others.some((pid) => stillIn(h.mountNs, pid)) && Date.now() < deadline)
    Atomics.wait(pause, 0, 0, 20);
  signalIn(h.mountNs, h.holderPid, "SIGKILL");
}

function isPid(pid: number | undefined): pid is number {
  return typeof pid === "number" && pid > 0;
}
