/**
 * virsh and qemu-img commands as argv arrays (pure: no I/O), kept apart from the transport that runs
 * them. Every virsh command names its connection (`-c <uri>`) and addresses domains by UUID only;
 * the one lookup by name uses the deterministic `usher-<vmId>`. Each command runs under
 * `env LC_ALL=C` so that error text, which errors.ts maps to codes, is never translated.
 * The parsers for their output are in parse.ts.
 */
import { check } from "./errors.ts";
import { assertAbsPath, assertUri, assertUuid } from "./validate.ts";
import { domainName, USHER_NS } from "./xml.ts";

export const DEFAULT_URI = "qemu:///system";

const C_LOCALE = ["env", "LC_ALL=C"] as const;

/** `virsh -c <uri> <args…>` under the C locale. */
export function virsh(uri: string, ...args: string[]): string[] {
  return [...C_LOCALE, "virsh", "-c", assertUri(uri, "connection URI"), ...args];
}

/**
 * Defines (or redefines, same name and UUID) a domain from the XML written to stdin:
 * `virsh -c URI define /dev/stdin`, behind `cat |`. virsh open()s its file argument, and opening
 * /dev/stdin fails (ENXIO) when stdin is a socket, which is what Node's child_process (and some
 * sshd builds) give a command; `cat` turns it into a pipe. The script is a constant and the URI is
 * its positional parameter `$1`, so the shell never reads anything but this fixed text.
 */
const DEFINE_SCRIPT = 'cat | virsh -c "$1" define /dev/stdin';

export const define = (uri: string) => [
  ...C_LOCALE,
  "sh",
  "-c",
  DEFINE_SCRIPT,
  "sh",
  assertUri(uri, "connection URI"),
];

/**
 * A new VM's start in one round trip: `define` (as above, XML on stdin), then, only if that worked,
 * `virsh start` of the UUID the XML gave it. The script is a constant; the URI and UUID are its `$1`
 * and `$2`. virsh's "Domain '…' defined from /dev/stdin" on stdout (`DEFINED`) tells a failed start
 * from a failed define.
 */
export const defineAndStart = (uri: string, uuid: string) => [
  ...C_LOCALE,
  "sh",
  "-c",
  `${DEFINE_SCRIPT} && exec virsh -c "$1" start "$2"`,
  "sh",
  assertUri(uri, "connection URI"),
  assertUuid(uuid),
];

/** What `virsh define` prints on success (C locale), with or without quotes around the name. */
export const DEFINED = / defined from \/dev\/stdin/;

/** Starts a defined domain; restores its managed save when it has one, unless `forceBoot`. */
export const start = (uri: string, uuid: string, opts: { forceBoot?: boolean } = {}) =>
  virsh(uri, "start", ...(opts.forceBoot ? ["--force-boot"] : []), assertUuid(uuid));

/** Asks the guest to power off (ACPI power button). */
export const shutdown = (uri: string, uuid: string) =>
  virsh(uri, "shutdown", "--mode", "acpi", assertUuid(uuid));

/** Forces the domain off (it stays defined). */
export const destroy = (uri: string, uuid: string) => virsh(uri, "destroy", assertUuid(uuid));

/** Removes the definition, with its managed save image and snapshot metadata. */
export const undefine = (uri: string, uuid: string) =>
  virsh(uri, "undefine", "--managed-save", "--snapshots-metadata", assertUuid(uuid));

export const reboot = (uri: string, uuid: string) => virsh(uri, "reboot", assertUuid(uuid));

/** Freezes the vCPUs (virsh calls this suspend; Usher calls it pause). */
export const pause = (uri: string, uuid: string) => virsh(uri, "suspend", assertUuid(uuid));

/** Unfreezes the vCPUs (virsh: resume; Usher: unpause). */
export const unpause = (uri: string, uuid: string) => virsh(uri, "resume", assertUuid(uuid));

/** Wakes a guest that suspended itself to RAM (pmsuspended). */
export const pmWakeup = (uri: string, uuid: string) => virsh(uri, "dompmwakeup", assertUuid(uuid));

/** Saves memory to libvirt's managed save file and stops the domain; `start` restores it running. */
export const managedSave = (uri: string, uuid: string) =>
  virsh(uri, "managedsave", "--running", assertUuid(uuid));

export const domstate = (uri: string, uuid: string) => virsh(uri, "domstate", "--reason", assertUuid(uuid));

/** State, vCPUs, memory and whether a managed save exists. */
export const dominfo = (uri: string, uuid: string) => virsh(uri, "dominfo", assertUuid(uuid));

export const listAllUuids = (uri: string) => virsh(uri, "list", "--all", "--uuid");

/** The UUID of the domain named `usher-<vmId>`. */
export const domuuidOf = (uri: string, vmId: string) => virsh(uri, "domuuid", domainName(vmId));

export const dumpxml = (uri: string, uuid: string) => virsh(uri, "dumpxml", assertUuid(uuid));

/** Usher's metadata element alone. */
export const metadata = (uri: string, uuid: string) => virsh(uri, "metadata", assertUuid(uuid), USHER_NS);

export const nodeinfo = (uri: string) => virsh(uri, "nodeinfo");

/** The host kernel's load averages (guests are QEMU threads, so their CPU use is in them). */
export const loadavg = () => [...C_LOCALE, "cat", "/proc/loadavg"];
export const nodememstats = (uri: string) => virsh(uri, "nodememstats");
export const freecell = (uri: string) => virsh(uri, "freecell", "--all");

export type MigrateArgs = {
  /** libvirt URI of the destination, e.g. `qemu+ssh://root@10.0.0.2/system`. */
  desturi: string;
  /** Where QEMU sends memory, e.g. `tcp://10.0.0.2`; libvirt's choice when absent. */
  migrateuri?: string;
  /** Keep the guest running while memory is copied (a non-live migration pauses it meanwhile). */
  live: boolean;
  /** Move the definition only (the domain is shut off). */
  offline?: boolean;
  /** Copy the disks' top layer (the overlay) to files already created on the destination. */
  copyStorage?: boolean;
};

/**
 * Moves the domain: persistent on the destination, undefined here, progress on stderr
 * (`Migration: [ 50 %]`). An offline migration (shut-off domain) takes no migrate URI or progress.
 */
export function migrate(uri: string, uuid: string, a: MigrateArgs): string[] {
  const flags = a.offline
    ? ["--offline", "--persistent", "--undefinesource"]
    : [
        ...(a.live ? ["--live"] : []),
        "--persistent",
        "--undefinesource",
        ...(a.copyStorage ? ["--copy-storage-inc"] : []),
        "--verbose",
      ];
  check(!a.desturi.startsWith("-"), "destination URI starts with '-'");
  const dest = assertUri(a.desturi, "destination URI");
  const mig = !a.offline && a.migrateuri !== undefined ? [assertUri(a.migrateuri, "migrate URI")] : [];
  return virsh(uri, "migrate", ...flags, assertUuid(uuid), dest, ...mig);
}

export const domjobinfo = (uri: string, uuid: string) => virsh(uri, "domjobinfo", assertUuid(uuid));
export const domjobabort = (uri: string, uuid: string) => virsh(uri, "domjobabort", assertUuid(uuid));

/** Creates a qcow2 overlay whose backing file is the (qcow2) base image. */
export const qemuImgCreate = (base: string, overlay: string) => [
  ...C_LOCALE,
  "qemu-img",
  "create",
  "-f",
  "qcow2",
  "-F",
  "qcow2",
  "-b",
  assertAbsPath(base, "base image path"),
  assertAbsPath(overlay, "overlay path"),
];

export const mkdirP = (dir: string) => [...C_LOCALE, "mkdir", "-p", "--", assertAbsPath(dir, "directory")];
export const removeFile = (path: string) => [...C_LOCALE, "rm", "-f", "--", assertAbsPath(path)];
