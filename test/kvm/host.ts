/**
 * One hypervisor host of the KVM test bed.
 *
 * How a host is made: a long-lived `unshare -m --propagation private -- perl -e HOLDER` (the
 * "holder") owns a private mount namespace. Its setup script bind-mounts the host's own folders over
 * /run/libvirt (= /var/run/libvirt), /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and
 * /etc/libvirt (and its ssh client config over /etc/ssh/ssh_config), then starts `virtlogd -d`,
 * `libvirtd -d` and `sshd`, each with its own pidfile; the holder then stays, reaping. Commands run
 * on the host later (exec()) enter the namespace with `nsenter -t <holder> -m -- <cmd>`.
 * The network namespace is shared: sshd listens on the host's own loopback address and port, and
 * guests migrate over loopback. Mounts made in the namespace never show on the machine, and vanish
 * with the namespace once its last process has ended.
 *
 * Every process of the host (daemons, qemu, ssh logins) is in that namespace, so stopping
 * (teardown.ts) ends them by pid, found by namespace (ownership.ts), and checks that none is left.
 * The state is plain data (JSON), so a CLI can stop a bed another process started.
 */
import { spawn } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type BedPaths,
  type HostPaths,
  LIBVIRT_CONF,
  LIBVIRTD_CONF,
  qemuConf,
  sshClientConfig,
  sshdConfig,
  VIRTLOGD_CONF,
} from "./files.ts";
import { isOurs, pin } from "./ownership.ts";
import {
  type ExecResult,
  HOST_ENV,
  mountNamespaceOf,
  pidAlive,
  pollUntil,
  shellQuote as q,
  type RunOptions,
  run,
  runOk,
  startTimeOf,
} from "./proc.ts";
import { which } from "./support.ts";

/** What it takes to find and stop a running host: plain data. */
export type HostState = {
  id: string;
  address: string;
  port: number;
  dir: string;
  /** The process that holds the mount namespace (and reaps the host's daemons). */
  holderPid: number;
  /** `mnt:[inode]` of the host's mount namespace. */
  mountNs: string;
  /** Daemons by name: virtlogd, libvirtd, sshd. */
  daemons: Record<string, number>;
  /** Start time of the holder and of each daemon, by pid: tells them from a later process reusing it. */
  startTimes: Record<string, string>;
};

export type HostSpec = { id: string; address: string; port: number; dir: string };

export function hostPaths(dir: string): HostPaths {
  return {
    run: join(dir, "run"),
    lib: join(dir, "lib"),
    log: join(dir, "log"),
    etc: join(dir, "etc"),
    cache: join(dir, "cache"),
    sshClientConfig: join(dir, "ssh_config"),
    sshdConfig: join(dir, "sshd_config"),
    hostKey: join(dir, "ssh_host_ed25519_key"),
    sshdPid: join(dir, "sshd.pid"),
    sshdLog: join(dir, "sshd.log"),
    libvirtdPid: join(dir, "libvirtd.pid"),
    virtlogdPid: join(dir, "virtlogd.pid"),
    daemonLog: join(dir, "daemons.log"),
  };
}

/** Makes an ed25519 key pair without passphrase at `path` (+ `.pub`); returns the public key line. */
export async function generateEd25519Key(path: string, comment: string): Promise<string> {
  await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path]);
  return (await readFile(`${path}.pub`, "utf8")).trim();
}

/**
 * Writes the host's folders, configuration and ed25519 host key; returns the key's public line and
 * its OpenSSH fingerprint ("SHA256:...", as `ssh-keygen -lf` prints it).
 */
export async function prepareHost(spec: HostSpec, bed: BedPaths) {
  const paths = hostPaths(spec.dir);
  const dirs = [paths.run, paths.lib, paths.log, paths.etc, paths.cache];
  await Promise.all(dirs.map((d) => mkdir(d, { recursive: true })));
  const [publicKey] = await Promise.all([
    generateEd25519Key(paths.hostKey, `${spec.id}-host`),
    writeFile(join(paths.etc, "qemu.conf"), qemuConf(spec.address)),
    writeFile(join(paths.etc, "libvirtd.conf"), LIBVIRTD_CONF),
    writeFile(join(paths.etc, "virtlogd.conf"), VIRTLOGD_CONF),
    writeFile(join(paths.etc, "libvirt.conf"), LIBVIRT_CONF),
    writeFile(paths.sshClientConfig, sshClientConfig(bed)),
    writeFile(paths.sshdConfig, sshdConfig({ address: spec.address, port: spec.port, paths, bed })),
  ]);
  const fingerprint = (await runOk("ssh-keygen", ["-lf", `${paths.hostKey}.pub`])).split(" ")[1] ?? "";
  return { publicKey, fingerprint };
}

/** `nsenter` arguments that run `command` inside the namespace held by `holderPid`. */
export function inNamespace(holderPid: number, command: string[]): string[] {
  return ["-t", String(holderPid), "-m", "--", ...command];
}

/** Runs a command inside the host's namespace. */
export function execIn(h: HostState, command: string[], opts?: RunOptions): Promise<ExecResult> {
  if (!isOurs(h, h.holderPid) || mountNamespaceOf(h.holderPid) !== h.mountNs) {
    return Promise.reject(new Error(`test-bed host ${h.id} is not running`));
  }
  return run("nsenter", inNamespace(h.holderPid, command), opts);
}

/**
 * The holder: a Perl loop (perl-base is Essential in Debian) made a child subreaper. The setup script it
 * runs daemonizes libvirtd, virtlogd and sshd, and libvirtd daemonizes each qemu; all of them are
 * re-parented to the holder rather than to pid 1, which in containers often never reaps, so ended
 * daemons do not linger as zombies. It prints "ready" or "failed <code>" once the script has run,
 * then sends its own output to the daemons' log and reaps until it is killed.
 */
const SYS_PRCTL = process.arch === "arm64" ? "167" : "157";
const HOLDER = `
use strict;
my ($prctl, $script, $log) = @ARGV;
syscall($prctl, 36, 1, 0, 0, 0) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\\n";
my $rc = system("/bin/sh", "-c", $script);
$| = 1;
print($rc == 0 ? "ready\\n" : "failed " . ($rc >> 8) . "\\n");
open(STDOUT, ">>", $log); open(STDERR, ">>", $log);
while (1) { sleep 1 if wait() == -1; }
`;

/**
 * Makes the namespace, mounts the host's folders and starts its daemons. `onStarted` receives the
 * state as soon as the namespace exists, so a failure (or an exit) half-way can still be cleaned up.
 */
export async function startHost(spec: HostSpec, onStarted: (h: HostState) => void): Promise<HostState> {
  const paths = hostPaths(spec.dir);
  // sshd re-executes itself, so it must be started by absolute path.
  const sshd = which("sshd") ?? "/usr/sbin/sshd";
  const log = `>>${q(paths.daemonLog)} 2>&1`;
  const binds: [string, string][] = [
    [paths.run, "/run/libvirt"], // = /var/run/libvirt
    [paths.lib, "/var/lib/libvirt"],
    [paths.log, "/var/log/libvirt"],
    [paths.cache, "/var/cache/libvirt"],
    [paths.etc, "/etc/libvirt"],
  ];
  const script = [
    "set -e",
    // The mount points are made on the machine's own file system (empty dirs, where the packages
    // would make them); what is mounted on them is seen only inside this namespace.
    ...binds.map(([src, dst]) => `mkdir -p ${dst} && mount --bind ${q(src)} ${dst}`),
    "test -f /etc/ssh/ssh_config || { echo 'no /etc/ssh/ssh_config to bind over' >&2; exit 1; }",
    `mount --bind ${q(paths.sshClientConfig)} /etc/ssh/ssh_config`,
    // A hypervisor host's root has no developer's shell set-up. This machine's ~/.bashrc (pyenv init)
    // would run on every SSH command (bash sources it when sshd starts it), adding ~0.2 s each and
    // serialising concurrent commands on pyenv's rehash lock.
    "if [ -f /root/.bashrc ]; then mount --bind /dev/null /root/.bashrc; fi",
    "mkdir -p -m 0755 /run/sshd", // sshd's privilege-separation dir
    `virtlogd -d -p ${q(paths.virtlogdPid)} ${log}`,
    `libvirtd -d -p ${q(paths.libvirtdPid)} ${log}`,
    `${sshd} -t -f ${q(paths.sshdConfig)}`,
    `${sshd} -f ${q(paths.sshdConfig)} -E ${q(paths.sshdLog)} ${log}`,
  ].join("\n");
  const holder = spawn(
    "unshare",
    ["-m", "--propagation", "private", "--", "perl", "-e", HOLDER, SYS_PRCTL, script, paths.daemonLog],
    // Its own process group: a Ctrl-C to the test runner does not end a host half-way.
    { env: HOST_ENV, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  holder.unref();
  const holderPid = holder.pid;
  if (holderPid === undefined) throw new Error(`${spec.id}: could not spawn unshare`);
  const output: string[] = [];
  holder.stderr.on("data", (b: Buffer) => output.push(b.toString()));
  const outcome = new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), 60_000);
    let text = "";
    holder.stdout.on("data", (b: Buffer) => {
      text += b.toString();
      const line = text.match(/^(ready|failed \d+)$/m);
      if (line) {
        clearTimeout(timer);
        resolve(line[1]!);
      }
    });
    holder.once("exit", (code) => {
      clearTimeout(timer);
      resolve(`holder exited ${code}`);
    });
  });
  // unshare(2) happens before the exec of perl: once the holder's namespace differs from ours, the
  // host exists and is handed over for cleanup, before its setup script starts anything.
  const ours = mountNamespaceOf("self");
  let mountNs: string | undefined;
  await pollUntil(() => {
    mountNs = mountNamespaceOf(holderPid);
    return (mountNs !== undefined && mountNs !== ours) || !pidAlive(holderPid);
  }, 10_000);
  const fail = async (what: string) =>
    new Error(`${spec.id}: ${what}\n${output.join("").trim()}\n${await tail(paths.daemonLog)}`.trim());
  if (!mountNs || mountNs === ours) {
    process.kill(holderPid, "SIGKILL");
    throw await fail("unshare -m did not make a mount namespace");
  }
  const h: HostState = { ...spec, holderPid, mountNs, daemons: {}, startTimes: {} };
  h.startTimes[holderPid] = startTimeOf(holderPid) ?? "";
  if (!pin(h)) {
    process.kill(holderPid, "SIGKILL");
    throw await fail("cannot hold the namespace open");
  }
  onStarted(h);
  const result = await outcome;
  if (result !== "ready") throw await fail(`setup ${result}`);

  for (const [name, pidFile] of [
    ["virtlogd", paths.virtlogdPid],
    ["libvirtd", paths.libvirtdPid],
    ["sshd", paths.sshdPid],
  ] as const) {
    let pid = 0;
    const up = await pollUntil(async () => {
      pid = Number((await readFile(pidFile, "utf8").catch(() => "")).trim()) || 0;
      return pid > 0 && mountNamespaceOf(pid) === mountNs;
    }, 15_000);
    if (!up) throw await fail(`${name} did not start`);
    h.daemons[name] = pid;
    h.startTimes[pid] = startTimeOf(pid) ?? "";
  }

  // `libvirtd -d` returns before it serves; the first answer also has it probe QEMU's capabilities.
  let last: ExecResult | undefined;
  const serving = await pollUntil(
    async () => {
      last = await execIn(h, ["virsh", "-c", "qemu:///system", "version"], { timeoutMs: 30_000 });
      return last.code === 0 || !pidAlive(h.daemons.libvirtd ?? 0);
    },
    60_000,
    200,
  );
  if (!serving || last?.code !== 0) {
    throw await fail(
      `libvirtd does not answer: ${last?.stderr.trim()}\n${await tail(join(paths.log, "libvirtd.log"))}`,
    );
  }
  return h;
}

async function tail(file: string, lines = 20): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
