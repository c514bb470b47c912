/**
 * Test-only: the accounts Debian's libvirtd needs before it will start. libvirtd resolves its
 * compiled-in qemu user and group (Debian: user libvirt-qemu, group libvirt-qemu, with kvm beside it)
 * before it reads qemu.conf, so they must exist even though our qemu.conf says root. Debian creates
 * them in libvirt-daemon-system's postinst, which CI does not install (it would start a system
 * libvirtd), so the test beds create them. The driver's tests and the KVM test bed run at the same
 * time (vitest's unit and e2e projects), so either may create an account just before the other: a
 * failed create is checked again rather than trusted.
 */
import { execFileSync } from "node:child_process";

const exists = (db: "group" | "passwd", name: string): boolean => {
  try {
    execFileSync("getent", [db, name], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

const attempt = (cmd: string, args: string[]) => {
  try {
    execFileSync(cmd, args, { stdio: "ignore" });
  } catch {
    // someone else may have made it meanwhile: the check below decides
  }
};

const GROUPS = ["kvm", "libvirt-qemu"];

export function ensureLibvirtAccounts(): void {
  for (const g of GROUPS) if (!exists("group", g)) attempt("groupadd", ["--system", g]);
  if (!exists("passwd", "libvirt-qemu")) {
    const home = ["--no-create-home", "--home-dir", "/var/lib/libvirt", "--shell", "/usr/sbin/nologin"];
    attempt("useradd", ["--system", ...home, "--gid", "kvm", "libvirt-qemu"]);
  }
  const missing = [
    ...GROUPS.filter((g) => !exists("group", g)).map((g) => `group ${g}`),
    ...(exists("passwd", "libvirt-qemu") ? [] : ["user libvirt-qemu"]),
  ];
  if (missing.length > 0)
    throw new Error(`libvirtd needs ${missing.join(", ")}, and they could not be created`);
}
