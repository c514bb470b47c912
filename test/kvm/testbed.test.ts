/**
 * The KVM test bed itself: two real libvirt hosts, reached over real SSH with pinned host keys, a
 * diskless guest started on one and live-migrated to the other, and nothing left after stop().
 * Skips (saying why) where the bed cannot run: not root, tools missing, no mount namespaces.
 */
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pidAlive, run, shellQuote, startTimeOf } from "./proc.ts";
import {
  disklessGuestXml,
  kvmTestbedSupport,
  startKvmTestbed,
  type Testbed,
  type TestbedHost,
} from "./testbed.ts";

const support = kvmTestbedSupport();
if (!support.ok) console.warn(`KVM test bed tests skipped: ${support.reason}`);
else if (support.reason) console.warn(`KVM test bed: ${support.reason}`);

describe.skipIf(!support.ok)("KVM test bed", () => {
  let bed: Testbed;
  let knownHosts: string;
  const guest = { name: `usher-bed-${Date.now().toString(36)}`, uuid: randomUUID() };
  const timings: Record<string, number> = {};

  /** `virsh -c qemu:///system ARGS` on a host over a real SSH login, its host key pinned. */
  const sshVirsh = (host: TestbedHost, args: string[], input?: string) =>
    run(
      "ssh",
      [
        ...["-i", bed.clientKeyPath, "-p", String(host.port), "-o", "IdentitiesOnly=yes"],
        ...["-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`],
        ...["-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"],
        `root@${host.address}`,
        ["virsh", "-c", host.libvirtUri, ...args].map(shellQuote).join(" "),
      ],
      { input, timeoutMs: 90_000 },
    );
  /** The guest's state on a host as its own libvirtd sees it (no SSH), or undefined if unknown there. */
  const stateOn = async (hostId: string) => {
    const r = await bed.exec(hostId, ["virsh", "-c", "qemu:///system", "domstate", guest.uuid]);
    return r.code === 0 ? r.stdout.trim() : undefined;
  };
  const kvm1 = () => bed.hosts[0]!;
  const kvm2 = () => bed.hosts[1]!;

  beforeAll(async () => {
    const t0 = Date.now();
    bed = await startKvmTestbed({ basePort: "auto" });
    timings.bedStartMs = Date.now() - t0;
    // The test's own known_hosts, from the public keys the bed reports (not the bed's file).
    knownHosts = join(bed.dir, "test_known_hosts");
    const lines = bed.hosts.map((h) => `[${h.address}]:${h.port} ${h.hostPublicKey}`);
    await writeFile(knownHosts, `${lines.join("\n")}\n`);
  }, 120_000);

  afterAll(async () => {
    await bed?.stop();
    console.log(`KVM test bed timings (ms): ${JSON.stringify(timings)}`);
  }, 120_000);

  it("pins each host's ed25519 key and reports its fingerprint", async () => {
    const listed = await run("ssh-keygen", ["-lf", knownHosts]);
    const fingerprints = listed.stdout
      .trim()
      .split("\n")
      .map((l) => l.split(" ")[1]);
    expect(fingerprints).toEqual(bed.hosts.map((h) => h.hostKeyFingerprint));
    for (const h of bed.hosts) expect(h.hostKeyFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(bed.clientPrivateKey).toContain("BEGIN OPENSSH PRIVATE KEY");
  });

  it("defines and starts a diskless guest on kvm-1 over SSH", async () => {
    const xml = disklessGuestXml({ ...guest, domainType: bed.domainType });
    const t0 = Date.now();
    const defined = await sshVirsh(kvm1(), ["define", "/dev/stdin"], xml);
    expect(defined.code, defined.stderr).toBe(0);
    const started = await sshVirsh(kvm1(), ["start", guest.uuid]);
    expect(started.code, started.stderr).toBe(0);
    timings.defineAndStartMs = Date.now() - t0;

    const state = await sshVirsh(kvm1(), ["domstate", guest.uuid]);
    expect(state.stdout.trim()).toBe("running");
    expect(await stateOn("kvm-1")).toBe("running");
  });

  it("keeps the hosts apart: kvm-2's libvirt does not know the guest", async () => {
    const listed = await sshVirsh(kvm2(), ["list", "--all", "--uuid"]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).not.toContain(guest.uuid);
    expect(await stateOn("kvm-2")).toBeUndefined();
  });

  it("live-migrates the guest from kvm-1 to kvm-2", async () => {
    const t0 = Date.now();
    const migrated = await sshVirsh(kvm1(), [
      ...["migrate", "--live", "--persistent", "--undefinesource", guest.uuid],
      kvm1().migrationUri(kvm2()),
      kvm2().migrationDataUri,
    ]);
    timings.migrationMs = Date.now() - t0;
    expect(migrated.code, migrated.stderr).toBe(0);

    const there = await sshVirsh(kvm2(), ["domstate", guest.uuid]);
    expect(there.stdout.trim()).toBe("running");
    expect(await stateOn("kvm-2")).toBe("running");
    const here = await sshVirsh(kvm1(), ["list", "--all", "--uuid"]);
    expect(here.stdout).not.toContain(guest.uuid);
    expect(await stateOn("kvm-1")).toBeUndefined();
  });

  it("stop() ends every process of the bed by pid and removes its files; twice is safe", async () => {
    const started = Object.values(bed.pids);
    const running = bed.processes();
    // The migrated guest's qemu runs on kvm-2, in that host's namespace.
    expect(running.some((p) => p.host === "kvm-2" && p.command.startsWith("qemu"))).toBe(true);
    for (const pid of started) expect(running.map((p) => p.pid)).toContain(pid);
    const identities = [...new Set([...started, ...running.map((p) => p.pid)])].map((pid) => ({
      pid,
      start: startTimeOf(pid),
    }));

    const t0 = Date.now();
    await bed.stop();
    timings.stopMs = Date.now() - t0;
    await bed.stop();

    // A pid may be reused by then (other work on the machine): match on start time too.
    const left = identities.filter(({ pid, start }) => pidAlive(pid) && startTimeOf(pid) === start);
    expect(left).toEqual([]);
    expect(bed.processes()).toEqual([]);
    expect(existsSync(bed.dir)).toBe(false);
    await expect(bed.exec("kvm-1", ["true"])).rejects.toThrow(/not running/);
  });
});
