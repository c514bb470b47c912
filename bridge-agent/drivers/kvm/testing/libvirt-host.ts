/**
 * Test-only: a private libvirtd on this machine, as one "host" of the KVM driver's tests (see
 * /work/shared/TESTBED.md). `unshare -m --propagation private` makes a mount namespace in which the
 * host's own folders are bind-mounted over /run/libvirt, /var/lib/libvirt, /var/log/libvirt,
 * /var/cache/libvirt and /etc/libvirt, and virtlogd and libvirtd are started. Commands run on the
 * host through `nsenter -t <holder> -m --`. Only mounts are private: the hosts share the network,
 * so guests migrate over 127.0.0.1, and the machine's file system, so a host's socket is reachable
 * by path from another host (`qemu+unix:///system?socket=...`) without sshd.
 *
 * The namespace's first process is a small Perl "holder" made a child subreaper: the daemons and
 * every qemu (which libvirt daemonises) are re-parented to it rather than to pid 1, and it reaps
 * them at once. That matters: libvirt waits for a killed qemu's pid to vanish, and where pid 1
 * reaps slowly (as in these sandboxes) each `virsh destroy` would take seconds. The holder exits
 * when its last child has, so its exit means the namespace, and its mounts, are gone.
 *
 * stop() destroys the guests, then ends qemu, libvirtd and virtlogd by pid and waits for the holder.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { LocalRunner } from "../../../transport/local.ts";
import { ensureLibvirtAccounts } from "./accounts.ts";
import { PrefixRunner } from "./prefix-runner.ts";

const TOOLS = ["libvirtd", "virtlogd", "virsh", "qemu-img", "qemu-system-x86_64", "unshare", "nsenter"];

/** Why this machine cannot run the tests, or undefined when it can. */
export function skipReason(): string | undefined {
  if (process.platform !== "linux") return "not Linux";
  if (process.getuid?.() !== 0) return "not root (a private libvirtd needs mount namespaces)";
  const missing = TOOLS.filter((t) => !which(t));
  if (missing.length > 0)
    return `missing ${missing.join(", ")} (Debian: libvirt-daemon, qemu-system-x86, ...)`;
  return undefined;
}

/** `kvm` when /dev/kvm is usable, else `qemu` (TCG). */
export const domainTypeHere = (): "kvm" | "qemu" => (existsSync("/dev/kvm") ? "kvm" : "qemu");

function which(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin")
    .split(":")
    .concat(["/usr/sbin", "/sbin"])) {
    if (existsSync(join(dir, tool))) return join(dir, tool);
  }
  return undefined;
}

export type LibvirtHost = {
  id: string;
  dir: string;
  /** The holder's pid: the namespace's handle. */
  pid: number;
  /** A new runner into the host's namespace (each driver closes its own). */
  runner(): PrefixRunner;
  /** URI by which another host's virsh reaches this libvirtd. */
  socketUri: string;
  /** Where the driver's images go on this host (inside its /var/lib/libvirt). */
  imagesDir: string;
  stop(): Promise<void>;
};

const BINDS = [
  ["run", "/run/libvirt"],
  ["lib", "/var/lib/libvirt"],
  ["log", "/var/log/libvirt"],
  ["cache", "/var/cache/libvirt"],
  ["etc", "/etc/libvirt"],
] as const;

// $1 is the host's folder. The mount points are made on the machine's own file system (empty
// folders, where the packages would make them); what is mounted on them is seen only in here.
const SETUP = `set -e
d="$1"
${BINDS.map(([src, dst]) => `mkdir -p ${dst} && mount --bind "$d/${src}" ${dst}`).join("\n")}
virtlogd -d -p /run/libvirt/virtlogd.pid
exec libvirtd -p /run/libvirt/libvirtd.pid >>"$d/log/libvirtd.stderr" 2>&1
`;

/** prctl(2)'s syscall number; PR_SET_CHILD_SUBREAPER is 36. */
const SYS_PRCTL = process.arch === "arm64" ? "167" : "157";
const HOLDER = `
my ($nr, $script, $dir) = @ARGV;
syscall($nr, 36, 1, 0, 0, 0) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\\n";
my $pid = fork() // die "fork: $!\\n";
if ($pid == 0) { exec("/bin/sh", "-c", $script, "sh", $dir) or die "exec sh: $!\\n"; }
while (wait() != -1) {}
`;

/** Starts a host in `dir` (made if missing); `hostUuid` must differ per host for migrations. */
export type HostOptions = {
  /** Must differ per host: libvirt refuses to migrate to a host with its own UUID. */
  hostUuid: string;
  /**
   * A folder that keeps libvirt's QEMU capabilities between hosts and runs: probing QEMU takes
   * libvirtd ~8 s here, a valid cache ~0.5 s (libvirtd re-probes when qemu or libvirt changed).
   */
  capsCacheDir?: string;
};

export async function startLibvirtHost(id: string, dir: string, o: HostOptions): Promise<LibvirtHost> {
  ensureLibvirtAccounts();
  for (const [sub] of BINDS) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(
    join(dir, "etc", "qemu.conf"),
    'user = "root"\ngroup = "root"\nsecurity_driver = "none"\ncgroup_controllers = [ ]\n',
  );
  writeFileSync(join(dir, "etc", "libvirtd.conf"), `host_uuid = "${o.hostUuid}"\n`);
  writeFileSync(join(dir, "etc", "virtlogd.conf"), "");
  const caps = join(dir, "cache", "qemu");
  if (o.capsCacheDir && existsSync(o.capsCacheDir)) cpSync(o.capsCacheDir, caps, { recursive: true });
  const child = spawn(
    "unshare",
    ["-m", "--propagation", "private", "--", "perl", "-e", HOLDER, SYS_PRCTL, SETUP, dir],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${id}: could not spawn unshare`);
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const makeRunner = () =>
    new PrefixRunner(new LocalRunner({ hostId: id }), ["nsenter", "-t", String(pid), "-m", "--"]);
  const host: LibvirtHost = {
    id,
    dir,
    pid,
    runner: makeRunner,
    socketUri: `qemu+unix:///system?socket=${join(dir, "run", "libvirt-sock")}`,
    imagesDir: "/var/lib/libvirt/images/usher",
    stop: () => stopHost(host, child, exited),
  };
  try {
    await waitReady(host, child, () => stderr);
  } catch (err) {
    await host.stop();
    throw err;
  }
  if (o.capsCacheDir && existsSync(caps)) cpSync(caps, o.capsCacheDir, { recursive: true });
  return host;
}

async function waitReady(h: LibvirtHost, child: ChildProcess, stderr: () => string): Promise<void> {
  const runner = h.runner();
  try {
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `${h.id}: setup exited (${child.exitCode ?? child.signalCode}): ${stderr()}${logTail(h)}`,
        );
      }
      const libvirtd = readPid(join(h.dir, "run", "libvirtd.pid"));
      if (libvirtd && !alive(libvirtd)) throw new Error(`${h.id}: libvirtd exited: ${stderr()}${logTail(h)}`);
      if (existsSync(join(h.dir, "run", "libvirt-sock"))) {
        const r = await runner.run(["virsh", "-c", "qemu:///system", "version"]).catch(() => undefined);
        if (r?.code === 0) return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${h.id}: libvirtd not ready after 30 s: ${stderr()}${logTail(h)}`);
  } finally {
    await runner.close();
  }
}

function logTail(h: LibvirtHost): string {
  try {
    return `\n${readFileSync(join(h.dir, "log", "libvirtd.log"), "utf8")
      .split("\n")
      .slice(-10)
      .join("\n")}`;
  } catch {
    return "";
  }
}

const readPid = (path: string): number | undefined => {
  try {
    const n = Number(readFileSync(path, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
};

/** True while `pid` is a live process (a zombie waiting for its parent to reap it counts as ended). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Pids of live processes in the mount namespace `ns` (`mnt:[…]`). */
function processesIn(ns: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readlinkSync(`/proc/${e}/ns/mnt`) === ns && alive(Number(e))) out.push(Number(e));
    } catch {
      // ended meanwhile, or not ours to read
    }
  }
  return out;
}

async function until(test: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (test()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return test();
}

function kill(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

async function stopHost(h: LibvirtHost, child: ChildProcess, exited: Promise<void>): Promise<void> {
  const running = () => child.exitCode === null && child.signalCode === null;
  let ns: string | undefined;
  try {
    ns = readlinkSync(`/proc/${h.pid}/ns/mnt`);
  } catch {
    ns = undefined;
  }
  // Never sweep the machine's own namespace (the holder is in it until unshare has made its own).
  if (ns === readlinkSync("/proc/self/ns/mnt")) ns = undefined;
  if (ns && running()) {
    // Guests first, while libvirtd can still end them cleanly.
    const runner = h.runner();
    const list = await runner.run(["virsh", "-c", "qemu:///system", "list", "--uuid"]).catch(() => undefined);
    for (const uuid of list?.stdout.split("\n").filter(Boolean) ?? []) {
      await runner.run(["virsh", "-c", "qemu:///system", "destroy", uuid.trim()]).catch(() => undefined);
    }
    await runner.close();
  }
  const run = join(h.dir, "run");
  const qemuDir = join(run, "qemu");
  const qemus = existsSync(qemuDir) ? readdirSync(qemuDir).filter((f) => f.endsWith(".pid")) : [];
  for (const f of qemus) kill(readPid(join(qemuDir, f)), "SIGKILL");
  kill(readPid(join(run, "libvirtd.pid")), "SIGTERM");
  kill(readPid(join(run, "virtlogd.pid")), "SIGTERM");
  // The holder exits once the daemons have; whatever is left in the namespace then is killed.
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (running() && ns) {
    for (const pid of processesIn(ns)) if (pid !== h.pid) kill(pid, "SIGKILL");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
  }
  if (running()) {
    child.kill("SIGKILL");
    await exited;
  }
  if (ns && !(await until(() => processesIn(ns).length === 0, 5_000))) {
    throw new Error(`${h.id}: processes left in its namespace: ${processesIn(ns).join(", ")}`);
  }
  rmSync(h.dir, { recursive: true, force: true });
}
