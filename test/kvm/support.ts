/**
 * Whether this machine can run the KVM test bed, and if not, why: tests print the reason and skip.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";

export type KvmSupport = {
  ok: boolean;
  /** Why the bed cannot run (when !ok), or a note on how it will run (TCG). */
  reason?: string;
};

const TOOLS = [
  "libvirtd",
  "virtlogd",
  "virsh",
  "qemu-system-x86_64",
  "sshd",
  "ssh",
  "ssh-keygen",
  "unshare",
  "nsenter",
  "mount",
] as const;

/** Debian packages that provide the tools (for the skip message). */
const PACKAGES =
  "libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils openssh-server openssh-client";

const SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The absolute path of a tool on the usual root PATH, or undefined. */
export function which(tool: string): string | undefined {
  for (const dir of SEARCH_PATH.split(":")) {
    try {
      accessSync(`${dir}/${tool}`, constants.X_OK);
      return `${dir}/${tool}`;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Whether the guests can use KVM (else they run under TCG, `<domain type='qemu'>`). */
export function kvmUsable(): boolean {
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

let cached: KvmSupport | undefined;

/**
 * Quick check (a few ms): root, the tools present, and a mount namespace can be made. Cached.
 * `/dev/kvm` is not required: without it guests run under TCG, and `reason` says so.
 */
export function kvmTestbedSupport(): KvmSupport {
  cached ??= check();
  return cached;
}

function check(): KvmSupport {
  if (process.platform !== "linux") return { ok: false, reason: "the KVM test bed needs Linux" };
  if (process.getuid?.() !== 0) {
    return { ok: false, reason: "the KVM test bed needs root (mount namespaces, libvirtd, sshd)" };
  }
  const missing = TOOLS.filter((t) => !which(t));
  if (missing.length > 0) {
    return {
      ok: false,
      reason: `missing ${missing.join(", ")}; install: apt-get install --no-install-recommends ${PACKAGES}`,
    };
  }
  // Containers without CAP_SYS_ADMIN cannot make mount namespaces; each test-bed host is one.
  const probe = spawnSync("unshare", ["-m", "--propagation", "private", "true"], { timeout: 5_000 });
  if (probe.status !== 0) {
    const why = probe.stderr?.toString().trim() || probe.error?.message || `exit ${probe.status}`;
    return { ok: false, reason: `cannot make a mount namespace (unshare -m): ${why}` };
  }
  if (!kvmUsable()) return { ok: true, reason: "no usable /dev/kvm: guests run under TCG (type='qemu')" };
  return { ok: true };
}
